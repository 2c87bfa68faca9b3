"""The ``local`` engine: CWL runs as detached processes on this machine, through cwltool in-process.

A supervisor process (``engines/runner.py``) is started once per server with a clean file descriptor
table; it keeps cwltool imported and tools loaded, and forks one runner per task. Everything this class
needs to follow a run lives on disk in the task's work directory (``run.json``, ``progress.json``,
``result.json``, ``engine.log``, ``logs/``) and in the handle ``{pid, start_time, workdir}``, so a
restarted server can adopt, collect or fail runs it did not start (``recover``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from bridgehead.config import Settings
from bridgehead.engines.base import JobInfo, RunSpec, RunState, RunStatus
from bridgehead.engines.runner import (
    ENGINE_LOG,
    PROGRESS,
    RESULT,
    RUN_SPEC,
    proc_start_time,
    write_json_atomic,
)

log = logging.getLogger(__name__)

ABORT_GRACE_S = 0.5  # SIGTERM first; whatever is left of the process group after this gets SIGKILL


class EngineError(RuntimeError):
    """The supervisor could not be started or did not answer."""


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, found by scanning /proc."""
    members: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    """Whether any live process remains in the group (a cheap signal probe first, then /proc)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(group_members(pgid))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _jobs(raw: list[dict[str, Any]]) -> list[JobInfo]:
    return [
        JobInfo(
            name=j["name"],
            status=j["status"],
            start_time=j.get("start_time"),
            end_time=j.get("end_time"),
            command_line=j.get("command_line", ""),
            logs={k: Path(v) for k, v in (j.get("logs") or {}).items() if Path(v).exists()},
        )
        for j in raw
    ]


def _status(state: RunState, data: dict[str, Any], workdir: Path) -> RunStatus:
    engine_log = workdir / ENGINE_LOG
    jobs = _jobs(data.get("jobs", []))
    if engine_log.exists():
        # execution_details links logs per job: every job links the task's engine log too, and a run
        # that failed before any job started shows one "engine" entry so its log is still reachable.
        if not jobs and state == "failed":
            end = data.get("finished_at")
            jobs = [JobInfo(name="engine", status="FAILED", start_time=end, end_time=end)]
        for job in jobs:
            job.logs["engine.log"] = engine_log
    return RunStatus(
        state=state,
        message=str(data.get("message", "")),
        outputs=data.get("outputs"),
        exit_code=data.get("exit_code"),
        steps_completed=int(data.get("steps_completed", 0)),
        steps_total=int(data.get("steps_total", 1)),
        jobs=jobs,
        engine_log=engine_log if engine_log.exists() else None,
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
    )


class LocalEngine:
    name = "local"
    poll_interval = 0.02  # poll reads two small files: the dispatcher may look often while runs are live

    def __init__(self, settings: Settings, warm: bool = True) -> None:
        self.settings = settings
        self.root = settings.data_dir / "engine"
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[bytes] | None = None
        if warm:  # import cwltool in the supervisor now, not when the first task is waiting
            threading.Thread(target=self._warm, name="local-engine-warmup", daemon=True).start()

    def _warm(self) -> None:
        try:
            with self._lock:
                self._supervisor()
        except Exception:  # submit() retries and reports the reason on the task
            log.exception("starting the local engine supervisor failed")

    # -- supervisor ---------------------------------------------------------------------------

    def _supervisor(self) -> subprocess.Popen[str]:
        """The running supervisor, started on first use (about half a second: it imports cwltool)."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.root.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.root / "supervisor.log", "ab")  # noqa: SIM115 (lives with the engine)
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridgehead.engines.runner", str(self.root / "apps")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            close_fds=True,
            cwd=self.root,
        )
        ready = self._reply(proc)
        if not ready.get("ready"):
            raise EngineError(f"the local engine supervisor did not start: {ready}")
        log.info("local engine supervisor started (pid %s)", proc.pid)
        self._proc = proc
        return proc

    @staticmethod
    def _reply(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise EngineError(f"the local engine supervisor exited (code {proc.wait()}); see supervisor.log")
        data = json.loads(line)
        assert isinstance(data, dict)
        return data

    def close(self) -> None:
        """Stop the supervisor (runners it started keep going: they are detached)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc = None
            if self._log is not None:
                self._log.close()
                self._log = None

    # -- Engine interface -----------------------------------------------------------------------

    def submit(self, run: RunSpec) -> dict[str, Any]:
        workdir = run.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in (RESULT, PROGRESS):
            (workdir / stale).unlink(missing_ok=True)
        spec = {
            "task_id": run.task_id,
            "app_id": run.app_id,
            "app_raw": run.app_raw,
            "job_order": run.job_order,
            "cores": run.cores,
            "memory_mib": run.memory_mib,
            "settings": run.settings,
        }
        write_json_atomic(workdir / RUN_SPEC, spec)
        with self._lock:
            for attempt in (1, 2):  # one retry with a fresh supervisor if the old one died
                proc = self._supervisor()
                assert proc.stdin is not None
                try:
                    proc.stdin.write(json.dumps({"workdir": str(workdir)}) + "\n")
                    proc.stdin.flush()
                    reply = self._reply(proc)
                    break
                except (BrokenPipeError, EngineError):
                    self._proc = None
                    if attempt == 2:
                        raise
        if "error" in reply:
            raise EngineError(f"the local engine could not start task {run.task_id}: {reply['error']}")
        return {"pid": reply["pid"], "start_time": reply["start_time"], "workdir": str(workdir)}

    def poll(self, handle: dict[str, Any]) -> RunStatus:
        workdir = Path(handle["workdir"])
        result = _read_json(workdir / RESULT)
        if result is not None:
            return _status(result["state"], result, workdir)
        if self._alive(handle):
            return _status("running", _read_json(workdir / PROGRESS) or {}, workdir)
        result = _read_json(workdir / RESULT)  # it may have finished between the two looks
        if result is not None:
            return _status(result["state"], result, workdir)
        progress = _read_json(workdir / PROGRESS) or {}
        progress["message"] = (
            f"The runner process (pid {handle.get('pid')}) ended without a result: it was killed, "
            "or the machine restarted while the task ran"
        )
        return _status("failed", progress, workdir)

    def recover(self, handle: dict[str, Any]) -> RunStatus:
        """A live runner (same pid and start time) is adopted, a finished one collected, a lost one failed."""
        return self.poll(handle)

    def cancel(self, handle: dict[str, Any]) -> None:
        """SIGTERM to the runner's process group, SIGKILL to whatever is left after a short grace."""
        workdir = Path(handle["workdir"])
        pid = int(handle["pid"])
        if self._alive(handle):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + ABORT_GRACE_S
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if not (workdir / RESULT).exists():
            progress = _read_json(workdir / PROGRESS) or {}
            progress.update(state="aborted", message="Aborted by user", finished_at=time.time())
            write_json_atomic(workdir / RESULT, progress)

    def capacity(self) -> tuple[int, int]:
        import psutil

        cores = self.settings.max_cores or os.cpu_count() or 1
        memory = self.settings.max_memory_mib or psutil.virtual_memory().total // (1024 * 1024)
        return cores, int(memory)

    @staticmethod
    def _alive(handle: dict[str, Any]) -> bool:
        started = proc_start_time(int(handle["pid"]))
        if started is None:
            return False
        expected = handle.get("start_time")
        return expected is None or started == int(expected)
