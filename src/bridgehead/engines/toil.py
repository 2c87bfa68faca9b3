"""The ``toil`` engine: one ``toil-cwl-runner`` leader per task, its jobs sent to a batch system.

The leader runs under a tiny ``sh`` wrapper in its own session. The wrapper records the leader's pid
and, when the leader exits, its exit code (``rc``), atomically. Everything needed to supervise the run
again sits in the task directory, so the handle never changes, even across ``--restart``:

- ``leader.json``: the leader's argument list and environment additions (reused for ``--restart``);
- ``wrapper.pid`` / ``leader.pid``: "pid start_time" lines (start time tells a reused pid apart);
- ``outputs.json``: the leader's stdout (the CWL output object); ``leader.log``: its stderr;
- ``toil.log``: Toil's own log, where finished CWL steps appear as "CWL step complete: ...";
- ``rc``: the leader's exit status; ``aborted``: the marker ``cancel`` leaves.

On Slurm every job of the task carries ``--comment=bridgehead-<task id>``, which is how ``cancel`` and
``recover`` find (and fence) the jobs of one task among everyone else's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bridgehead.config import Settings
from bridgehead.engines.base import JobInfo, RunSpec, RunStatus
from bridgehead.engines.slurm import (
    Squeue,
    check_work_dir,
    cluster_capacity,
    local_paths,
    probe_shared,
    read_json,
    scancel_and_wait,
    steps_total,
    tail,
    work_root,
    write_run_files,
)

log = logging.getLogger(__name__)

_TERM_GRACE_S = 15.0  # Toil's leader shuts down cleanly on SIGTERM in about 5 s (execution.md §2.3)
_STEP_DONE = "CWL step complete: "

# sh wrapper: start the leader in the background, record its pid and start time, wait, record rc.
_WRAPPER = (
    'cd "$1"; shift; "$@" > outputs.json 2>> leader.log & leader=$!; '
    'echo "$leader $(cut -d" " -f22 /proc/$leader/stat 2>/dev/null)" > leader.pid.tmp; '
    "mv leader.pid.tmp leader.pid; wait $leader; echo $? > rc.tmp; mv rc.tmp rc"
)


def toil_binary() -> str | None:
    """``toil-cwl-runner`` next to this interpreter (the project venv), else on PATH."""
    beside = Path(sys.executable).parent / "toil-cwl-runner"
    if beside.exists():
        return str(beside)
    return shutil.which("toil-cwl-runner")


def preflight(settings: Settings, probe: bool = True, probe_timeout: float = 60.0) -> list[str]:
    """Problems that make the toil engine unusable, each saying what to fix; empty when all is well."""
    problems: list[str] = []
    binary = toil_binary()
    if binary is None:
        problems.append(
            "the toil engine needs toil-cwl-runner: pip install 'toil[cwl]' into bridgehead's venv"
        )
    elif not (Path(binary).parent / "_toil_worker").exists() and shutil.which("_toil_worker") is None:
        problems.append(f"_toil_worker is missing beside {binary}: reinstall 'toil[cwl]' in that venv")
    batch = settings.toil_batch_system
    needs = {
        "slurm": "sbatch",
        "lsf": "bsub",
        "grid_engine": "qsub",
        "torque": "qsub",
        "htcondor": "condor_submit",
    }
    if batch in needs and shutil.which(needs[batch]) is None:
        problems.append(
            f"BRIDGEHEAD_TOIL_BATCH_SYSTEM={batch} but `{needs[batch]}` is not on PATH: install that "
            "scheduler's client tools on this host or pick another batch system"
        )
    root = work_root(settings)
    problems += check_work_dir(root)
    if probe and not problems and batch == "slurm":
        problems += probe_shared(root, settings.slurm_partition, probe_timeout)
    return problems


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _alive(record: Path) -> int | None:
    """The pid in a "pid start_time" file if that very process still runs (not a reused pid)."""
    try:
        parts = record.read_text().split()
        pid = int(parts[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if len(parts) > 1 and record.name == "wrapper.pid" and abs(proc.create_time() - float(parts[1])) > 1:
            return None
    except (psutil.Error, ValueError):
        return None
    return pid


class ToilEngine:
    """A leader per task, supervised through files in the task directory."""

    name = "toil"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.squeue = Squeue()
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # workdir -> wrapper we started (to reap)

    # -- submit ---------------------------------------------------------------------------------------

    def submit(self, run: RunSpec) -> dict[str, Any]:
        binary = toil_binary()
        if binary is None:
            raise RuntimeError("toil-cwl-runner is not installed")
        wd = write_run_files(run)
        for stale in ("rc", "aborted", "outputs.json", "leader.pid", "wrapper.pid"):
            (wd / stale).unlink(missing_ok=True)
        args = [
            binary,
            "--jobStore",
            f"file:{wd / 'jobstore'}",
            "--batchSystem",
            self.settings.toil_batch_system,
            "--no-container",
            "--outdir",
            str(wd / "outputs"),
            "--workDir",
            str(wd / "work"),
            "--logFile",
            str(wd / "toil.log"),
            "--logInfo",
            "--statePollingWait",
            "1",
            "--retryCount",
            "0",
            "--maxLocalJobs",
            str(max(run.cores, 1)),
        ]
        if run.settings.get("use_interruptible_instances"):
            args.append("--defaultPreemptible=true")
        if self.settings.toil_batch_system == "slurm":
            extra = f"--comment=bridgehead-{run.task_id}"
            if self.settings.slurm_partition:
                args += ["--slurmPartition", self.settings.slurm_partition]
            args.append(f"--slurmArgs={extra}")
        args += [str(wd / "app.cwl"), str(wd / "job.json")]
        (wd / "leader.json").write_text(json.dumps({"args": args, "task_id": run.task_id}))
        self._launch(wd, args)
        return {"workdir": str(wd), "task_id": run.task_id}

    def _launch(self, wd: Path, args: list[str]) -> None:
        env = dict(os.environ)
        # Toil's workers run `_toil_worker`; it must resolve to the same install on every node.
        env["PATH"] = f"{Path(args[0]).parent}{os.pathsep}{env.get('PATH', '')}"
        with (wd / "leader.log").open("ab") as err:
            err.write(f"$ {shlex.join(args)}\n".encode())
        proc = subprocess.Popen(
            ["sh", "-c", _WRAPPER, "sh", str(wd), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        (wd / "wrapper.pid").write_text(f"{proc.pid} {_start_time(proc.pid) or 0}")
        self._children[str(wd)] = proc

    # -- poll -----------------------------------------------------------------------------------------

    def poll(self, handle: dict[str, Any]) -> RunStatus:
        wd = Path(handle["workdir"])
        child = self._children.get(str(wd))
        if child is not None and child.poll() is not None:
            self._children.pop(str(wd), None)  # reaped; rc is on disk
        app = read_json(wd / "app.cwl")
        total = steps_total(app) if isinstance(app, dict) else 1
        done_steps = self._steps_done(wd)
        started_at = self._started_at(wd)
        rc_text = self._read(wd / "rc")
        if rc_text is None:
            if _alive(wd / "wrapper.pid") is not None:
                return RunStatus(
                    state="running",
                    steps_completed=min(done_steps, total),
                    steps_total=total,
                    started_at=started_at,
                    jobs=self._jobs(wd, done=False),
                )
            if (wd / "aborted").exists():
                return self._end(wd, "aborted", "Aborted", None, total, done_steps, started_at)
            return self._end(
                wd,
                "failed",
                "The Toil leader died without an exit status",
                None,
                total,
                done_steps,
                started_at,
            )
        rc = int(rc_text) if rc_text.lstrip("-").isdigit() else -1
        if (wd / "aborted").exists():
            return self._end(wd, "aborted", "Aborted", rc, total, done_steps, started_at)
        if rc == 0:
            outputs = read_json(wd / "outputs.json")
            if isinstance(outputs, dict):
                status = self._end(wd, "completed", "", 0, total, total, started_at)
                status.outputs = local_paths(outputs)
                return status
            return self._end(
                wd, "failed", "toil-cwl-runner printed no output object", rc, total, done_steps, started_at
            )
        reason = self._failure_reason(wd) or f"toil-cwl-runner exited with status {rc}"
        return self._end(wd, "failed", reason, rc, total, done_steps, started_at)

    def _end(
        self,
        wd: Path,
        state: str,
        message: str,
        rc: int | None,
        total: int,
        done: int,
        started_at: float | None,
    ) -> RunStatus:
        finished = (wd / "rc").stat().st_mtime if (wd / "rc").exists() else time.time()
        return RunStatus(
            state=state,  # type: ignore[arg-type]
            message=message,
            exit_code=rc,
            steps_completed=min(done, total),
            steps_total=total,
            jobs=self._jobs(wd, done=True, state=state),
            engine_log=wd / "leader.log" if (wd / "leader.log").exists() else None,
            started_at=started_at,
            finished_at=finished,
        )

    def _jobs(self, wd: Path, done: bool, state: str = "running") -> list[JobInfo]:
        logs = {name: wd / name for name in ("toil.log", "leader.log") if (wd / name).exists()}
        status = "RUNNING"
        if done:
            status = {"completed": "DONE", "aborted": "ABORTED"}.get(state, "FAILED")
        return [
            JobInfo(
                name="toil-cwl-runner",
                status=status,  # type: ignore[arg-type]
                start_time=self._started_at(wd),
                end_time=(wd / "rc").stat().st_mtime if done and (wd / "rc").exists() else None,
                command_line=shlex.join((read_json(wd / "leader.json") or {}).get("args", [])),
                logs=logs,
            )
        ]

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError:
            return None

    @staticmethod
    def _started_at(wd: Path) -> float | None:
        try:
            return float((wd / "wrapper.pid").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def _steps_done(wd: Path) -> int:
        try:
            text = (wd / "toil.log").read_text(errors="replace")
        except OSError:
            return 0
        return len({line.split(_STEP_DONE, 1)[1].strip() for line in text.splitlines() if _STEP_DONE in line})

    @staticmethod
    def _failure_reason(wd: Path) -> str:
        """The most telling lines of the leader's stderr (Toil prints the failing job's log there)."""
        text = tail(wd / "leader.log", 400).splitlines()
        picked = [ln for ln in text if "exited with status" in ln or "permanentFail" in ln or "Error" in ln]
        return "\n".join((picked or text)[-5:])

    # -- cancel / recover -----------------------------------------------------------------------------

    def cancel(self, handle: dict[str, Any]) -> None:
        wd = Path(handle["workdir"])
        (wd / "aborted").touch()
        leader = _alive(wd / "leader.pid")
        if leader is not None:
            os.kill(leader, signal.SIGTERM)  # Toil kills its jobs and keeps the job store
        deadline = time.monotonic() + _TERM_GRACE_S
        while time.monotonic() < deadline and _alive(wd / "wrapper.pid") is not None:
            child = self._children.get(str(wd))
            if child is not None:
                child.poll()
            time.sleep(0.1)
        wrapper = _alive(wd / "wrapper.pid")
        if wrapper is not None:
            with contextlib.suppress(OSError):
                os.killpg(wrapper, signal.SIGKILL)
        self._fence(handle)

    def _fence(self, handle: dict[str, Any]) -> None:
        """Cancel every batch job the task still has on Slurm (leftovers of a dead or stopped leader)."""
        if self.settings.toil_batch_system != "slurm" or shutil.which("squeue") is None:
            return
        ids = self.squeue.jobs_with_comment(f"bridgehead-{handle['task_id']}")
        if ids and not scancel_and_wait(self.squeue, ids):
            log.warning("task %s: Slurm jobs %s still listed after scancel", handle["task_id"], ids)

    def recover(self, handle: dict[str, Any]) -> RunStatus:
        """A live leader is supervised again; a dead one without an exit status is restarted."""
        wd = Path(handle["workdir"])
        if _alive(wd / "wrapper.pid") is not None or (wd / "rc").exists() or (wd / "aborted").exists():
            return self.poll(handle)
        spec = read_json(wd / "leader.json")
        if not isinstance(spec, dict) or not (wd / "jobstore").exists():
            return self.poll(handle)  # nothing to resume from: poll reports it failed
        # Fence first: jobs of the dead leader must not race the restarted one (execution.md §2.3).
        self._fence(handle)
        args = list(spec["args"])
        if "--restart" not in args:
            args.insert(1, "--restart")
        log.info("task %s: restarting the Toil leader from its job store", handle["task_id"])
        self._launch(wd, args)
        return self.poll(handle)

    def capacity(self) -> tuple[int, int]:
        if self.settings.toil_batch_system == "slurm":
            return cluster_capacity(self.settings.slurm_partition)
        return psutil.cpu_count() or 1, int(psutil.virtual_memory().total / 2**20)
