"""A deterministic engine without processes, for API and domain tests and benchmarks.

Runs are scripted from the task itself:
- duration: ``execution_settings.fake_duration`` (seconds) or ``BRIDGEHEAD_FAKE_DURATION``; default 0;
- outcome: an input string ``fake:fail`` fails the run, ``fake:no-outputs`` completes it without
  writing outputs (so the required-output rule can be seen to fail it).
On completion it writes small real files into the run's directory matching the app's declared
outputs, so output ingestion is exercised for real: as few files as that needs (a log and one file
per output), since creating files is most of what a fake run costs. Their contents are the same in
every run, so each is a hard link to one copy kept beside the run directories (a new directory entry,
no new inode: file creation cost up to a millisecond on some disks here). The handle carries
everything needed, so polls are stateless and a restarted server recovers fake runs like real ones.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from bridgehead.config import Settings
from bridgehead.engines.base import JobInfo, RunSpec, RunStatus

FAIL = "fake:fail"
NO_OUTPUTS = "fake:no-outputs"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _outputs(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    """(id, type) of the CWL document's outputs, in either list or map form."""
    outs = raw.get("outputs") or []
    pairs: list[tuple[str, Any]] = []
    if isinstance(outs, dict):
        for oid, spec in outs.items():
            pairs.append((oid, spec.get("type") if isinstance(spec, dict) else spec))
    else:
        for spec in outs:
            if isinstance(spec, dict):
                pairs.append((str(spec.get("id", "")).lstrip("#").rsplit("/", 1)[-1], spec.get("type")))
    return pairs


def _base_type(t: Any) -> tuple[str, bool]:
    """(item type name, is_array) for the simple shapes the fake writes."""
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if isinstance(t, dict) and t.get("type") == "array":
        return _base_type(t.get("items"))[0], True
    if isinstance(t, str):
        name = t.rstrip("?")
        if name.endswith("[]"):
            return name[:-2], True
        return name, False
    return "Any", False


def _write(path: Path, text: str, runs_dir: Path) -> None:
    """``path`` with ``text``: a hard link to the one copy of that text in ``runs_dir/.fake-files``
    (beside the run directories), or a plain write where linking is not possible."""
    data = text.encode()
    shared = runs_dir / ".fake-files" / hashlib.sha256(data).hexdigest()
    try:
        if not shared.exists():
            shared.parent.mkdir(exist_ok=True)
            tmp = shared.with_name(f"{shared.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, shared)
        os.link(shared, path)
    except OSError:
        path.write_bytes(data)


class FakeEngine:
    name = "fake"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default_duration = float(os.environ.get("BRIDGEHEAD_FAKE_DURATION", "0") or 0)

    def submit(self, run: RunSpec) -> dict[str, Any]:
        run.workdir.mkdir(parents=True, exist_ok=True)
        words = _strings(run.job_order)
        outcome = "fail" if FAIL in words else "no-outputs" if NO_OUTPUTS in words else "ok"
        duration = run.settings.get("fake_duration", self.default_duration)
        if not isinstance(duration, (int, float)) or isinstance(duration, bool):
            duration = self.default_duration
        return {
            "workdir": str(run.workdir),
            "submitted": time.time(),
            "duration": float(duration),
            "outcome": outcome,
            "outputs": [[oid, t] for oid, t in _outputs(run.app_raw)],
            "job": run.app_id.split("/")[2] if run.app_id.count("/") >= 2 else run.app_id,
        }

    def poll(self, handle: dict[str, Any]) -> RunStatus:
        workdir = Path(handle["workdir"])
        started = float(handle["submitted"])
        if (workdir / "cancelled").exists():
            return RunStatus("aborted", "Aborted", started_at=started, finished_at=time.time())
        elapsed = time.time() - started
        if elapsed < float(handle["duration"]):
            job = JobInfo(handle["job"], "RUNNING", start_time=started, command_line="fake run")
            return RunStatus(
                "running", "Running", steps_completed=0, steps_total=1, jobs=[job], started_at=started
            )
        return self._finish(handle, workdir, started)

    def _finish(self, handle: dict[str, Any], workdir: Path, started: float) -> RunStatus:
        finished = started + float(handle["duration"])
        log = workdir / "stdout.log"
        failed = handle["outcome"] == "fail"
        _write(log, f"fake engine: outcome {handle['outcome']}\n", workdir.parent)
        job = JobInfo(
            handle["job"],
            "FAILED" if failed else "DONE",
            start_time=started,
            end_time=finished,
            command_line=f"fake {handle['job']}",
            logs={"stdout.log": log},
        )
        if failed:
            return RunStatus(
                "failed",
                "Failed: the fake engine was asked to fail (input 'fake:fail').",
                exit_code=1,
                steps_completed=0,
                jobs=[job],
                started_at=started,
                finished_at=finished,
            )
        outputs: dict[str, Any] = {}
        if handle["outcome"] == "ok":
            outputs = self._write_outputs(handle["outputs"], workdir)
        return RunStatus(
            "completed",
            "Completed",
            outputs=outputs,
            exit_code=0,
            steps_completed=1,
            jobs=[job],
            started_at=started,
            finished_at=finished,
        )

    @staticmethod
    def _write_outputs(specs: list[list[Any]], out_dir: Path) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for oid, t in specs:
            base, is_array = _base_type(t)
            value: Any
            if base == "File":
                path = out_dir / f"{oid}.txt"
                _write(path, f"output {oid} of a fake run\n", out_dir.parent)
                value = {"class": "File", "location": str(path), "path": str(path), "basename": path.name}
            elif base == "Directory":
                path = out_dir / oid
                path.mkdir(exist_ok=True)
                _write(path / "part.txt", f"part of {oid}\n", out_dir.parent)
                value = {"class": "Directory", "location": str(path), "path": str(path), "basename": oid}
            elif base in ("int", "long"):
                value = 1
            elif base in ("float", "double"):
                value = 1.0
            elif base == "boolean":
                value = True
            else:
                value = f"fake {oid}"
            outputs[oid] = [value] if is_array else value
        return outputs

    def cancel(self, handle: dict[str, Any]) -> None:
        workdir = Path(handle["workdir"])
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "cancelled").touch()

    def recover(self, handle: dict[str, Any]) -> RunStatus:
        return self.poll(handle)

    def capacity(self) -> tuple[int, int]:
        return (self.settings.max_cores or 1000, self.settings.max_memory_mib or 16 * 1024 * 1024)
