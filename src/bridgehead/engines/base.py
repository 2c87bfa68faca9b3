"""The engine seam: one small interface that fake, local, toil and slurm implement.

The dispatcher (``workers/dispatcher.py``) is the only caller. It builds a ``RunSpec`` for a QUEUED
task (the app's CWL, a job order whose File/Directory ``location`` values are absolute local paths
staged from the blob store, and a work directory), calls ``submit``, stores the returned handle on the
task row, polls until the run is finished, then ingests the outputs as project files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

RunState = Literal["queued", "running", "completed", "failed", "aborted"]
JobState = Literal["RUNNING", "DONE", "FAILED", "ABORTED"]


@dataclass
class RunSpec:
    task_id: str
    app_id: str  # owner/project/app/revision: the cache key for the loaded tool
    app_raw: dict[str, Any]  # the CWL document (packed; steps embedded)
    job_order: dict[str, Any]  # CWL inputs; File/Directory ``location`` are absolute local paths
    workdir: Path  # the task's own directory; outputs are written under workdir / "outputs"
    cores: int = 1
    memory_mib: int = 1024
    settings: dict[str, Any] = field(default_factory=dict)  # execution_settings, interruptible, ...


@dataclass
class JobInfo:
    """One job (tool invocation / workflow step) for ``execution_details``."""

    name: str
    status: JobState
    start_time: float | None = None  # epoch seconds
    end_time: float | None = None
    command_line: str = ""
    logs: dict[str, Path] = field(default_factory=dict)  # log name -> local file (stdout, stderr, ...)


@dataclass
class RunStatus:
    state: RunState
    message: str = ""
    outputs: dict[str, Any] | None = None  # CWL output object; File ``location`` are local paths
    exit_code: int | None = None
    steps_completed: int = 0
    steps_total: int = 1
    jobs: list[JobInfo] = field(default_factory=list)
    engine_log: Path | None = None
    started_at: float | None = None  # epoch seconds the tool process started
    finished_at: float | None = None


class Engine(Protocol):
    name: str

    def submit(self, run: RunSpec) -> dict[str, Any]:
        """Start the run; return a JSON-serialisable handle (stored on the task row)."""
        ...

    def poll(self, handle: dict[str, Any]) -> RunStatus: ...

    def cancel(self, handle: dict[str, Any]) -> None:
        """Stop the run and everything it started (within about a second for local runs)."""
        ...

    def recover(self, handle: dict[str, Any]) -> RunStatus:
        """After a restart: adopt a run that still lives, collect one that ended, or fail it with a reason."""
        ...

    def capacity(self) -> tuple[int, int]:
        """(cores, memory MiB) the engine may use at once; the dispatcher admits runs within it."""
        ...
