"""The ``slurm`` engine: one ``sbatch`` job per task, running the CWL in-process with cwltool on the node.

The job runs the local engine's runner (cwltool in-process) with this very interpreter, so compute
nodes need the same install path (a shared venv) and the work directory on a filesystem every node
mounts. All state lives in the work directory and in Slurm itself, never in this process, which
makes ``recover`` the same as ``poll``:

- ``runspec.json`` / ``app.cwl`` / ``job.json``: written by ``submit``;
- ``started.json``: written by the job when it starts (host, pid, time);
- ``result.json``: written atomically by the job when the run ends (state, outputs, message);
- ``aborted``: a marker ``cancel`` leaves so that a killed job reads as ABORTED, not FAILED.

Helpers shared with the ``toil`` engine (Slurm queries, preflight checks, output conversion) live here.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from bridgehead.config import Settings
from bridgehead.engines.base import JobInfo, RunSpec, RunStatus

log = logging.getLogger(__name__)

# Slurm job states (squeue %T) mapped onto ours; anything else that is still listed counts as running.
_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"}
_GONE_GRACE_S = 10.0  # a job left the queue but result.json is not visible yet (NFS attribute caches)
_SQUEUE_TTL_S = 0.5  # one squeue call serves every poll within this window
SCHEMA_DIR = ".cwl-schemas"  # under the work root: parsed CWL schemas that jobs share (runner.py)


# ---------------------------------------------------------------------------------------------------
# Slurm command helpers


class Squeue:
    """A short-lived cache of ``squeue`` so that polling N tasks costs one call, not N."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._jobs: dict[str, tuple[str, str]] = {}  # job id -> (state, comment)

    def snapshot(self, fresh: bool = False) -> dict[str, tuple[str, str]]:
        with self._lock:
            if fresh or time.monotonic() - self._at > _SQUEUE_TTL_S:
                out = _run(["squeue", "-h", "-o", "%i|%T|%k"], timeout=30)
                jobs: dict[str, tuple[str, str]] = {}
                for line in out.splitlines():
                    parts = line.strip().split("|", 2)
                    if len(parts) == 3:
                        jobs[parts[0]] = (parts[1], parts[2])
                self._jobs, self._at = jobs, time.monotonic()
            return self._jobs

    def jobs_with_comment(self, comment: str) -> list[str]:
        return [jid for jid, (_, c) in self.snapshot(fresh=True).items() if c == comment]


def _run(cmd: list[str], timeout: float = 30, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def scancel_and_wait(squeue: Squeue, job_ids: list[str], timeout: float = 10.0) -> bool:
    """Cancel the jobs and wait until ``squeue`` no longer lists them; False if some are still there."""
    if not job_ids:
        return True
    subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = squeue.snapshot(fresh=True)
        if not any(j in listed and listed[j][0] not in ("CANCELLED", "COMPLETED") for j in job_ids):
            return True
        time.sleep(0.1)
    return False


_CAPACITY: dict[str | None, tuple[float, tuple[int, int]]] = {}
_CAPACITY_TTL_S = 30.0  # the dispatcher asks every pass; nodes come and go far more slowly


def cluster_capacity(partition: str | None) -> tuple[int, int]:
    """Total (cores, memory MiB) of the partition's nodes, as ``sinfo`` reports them (cached briefly)."""
    cached = _CAPACITY.get(partition)
    if cached is not None and time.monotonic() - cached[0] < _CAPACITY_TTL_S:
        return cached[1]
    found = _sinfo_capacity(partition)
    _CAPACITY[partition] = (time.monotonic(), found)
    return found


def _sinfo_capacity(partition: str | None) -> tuple[int, int]:
    cmd = ["sinfo", "-h", "-N", "-o", "%N|%c|%m"]
    if partition:
        cmd += ["-p", partition]
    try:
        out = _run(cmd, timeout=30)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        log.warning("sinfo failed, assuming one core: %s", exc)
        return 1, 1024
    nodes: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        name, cpus, mem = ([*line.strip().split("|"), "", "", ""])[:3]
        if name and cpus.isdigit():
            nodes[name] = (int(cpus), int(mem.rstrip("+")) if mem.rstrip("+").isdigit() else 0)
    return sum(c for c, _ in nodes.values()) or 1, sum(m for _, m in nodes.values()) or 1024


# ---------------------------------------------------------------------------------------------------
# Preflight: bad configuration refuses to start with a message that says what to fix


def work_root(settings: Settings) -> Path:
    """Where cluster engines keep task directories: ``work_dir`` if set, else the data dir's tasks."""
    return (settings.work_dir or settings.tasks_dir).resolve()


def _fs_type(path: Path) -> str:
    best, fstype = "", ""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target = str(path)
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, fstype = mount, parts[2]
    return fstype


def check_work_dir(root: Path) -> list[str]:
    """The work dir must exist (or be creatable), be writable, and not live in memory."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        marker = root / f".write-test-{uuid.uuid4().hex}"
        marker.write_text("ok")
        marker.unlink()
    except OSError as exc:
        return [
            f"work directory {root} is not writable ({exc}): "
            "set BRIDGEHEAD_WORK_DIR to a writable shared path"
        ]
    fstype = _fs_type(root)
    if fstype in ("tmpfs", "ramfs"):
        return [
            f"work directory {root} is on {fstype}, which compute nodes cannot see: "
            "set BRIDGEHEAD_WORK_DIR (and the data dir) to a shared filesystem such as NFS or Lustre"
        ]
    return []


def probe_shared(root: Path, partition: str | None, timeout: float = 60.0) -> list[str]:
    """Run a tiny batch job that writes a marker file into the work dir; it must show up here."""
    marker = root / f".probe-{uuid.uuid4().hex}"
    cmd = ["sbatch", "--parsable", "-J", "bridgehead-probe", "-o", "/dev/null", "-e", "/dev/null"]
    if partition:
        cmd += ["-p", partition]
    cmd += ["--wrap", f"hostname > {marker}"]
    try:
        job_id = _run(cmd, timeout=30).strip().split(";")[0]
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return [f"cannot submit a probe job with sbatch: {exc}"]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if marker.exists():
                return []
            time.sleep(0.2)
    finally:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30, check=False)
        marker.unlink(missing_ok=True)
    return [
        f"a probe job ({job_id}) did not write {marker} within {timeout:.0f} s: the work directory is not "
        "shared with the compute nodes, or the cluster has no free node; set BRIDGEHEAD_WORK_DIR to a "
        "filesystem every node mounts"
    ]


def preflight(settings: Settings, probe: bool = True, probe_timeout: float = 60.0) -> list[str]:
    """Problems that make the slurm engine unusable, each saying what to fix; empty when all is well."""
    missing = [cmd for cmd in ("sbatch", "squeue", "scancel", "sinfo") if shutil.which(cmd) is None]
    problems = []
    if missing:
        problems.append(
            f"the slurm engine needs {', '.join(missing)} on PATH: "
            "install the Slurm client tools (slurm-client) on this host"
        )
    root = work_root(settings)
    problems += check_work_dir(root)
    if probe and not problems:
        problems += probe_shared(root, settings.slurm_partition, probe_timeout)
    return problems


# ---------------------------------------------------------------------------------------------------
# Files shared by the engine and its job


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_run_files(run: RunSpec) -> Path:
    """Lay out the task directory: the app, the job order and the spec the job reads back."""
    wd = run.workdir.resolve()
    for sub in ("outputs", "tmp", "work"):
        (wd / sub).mkdir(parents=True, exist_ok=True)
    (wd / "app.cwl").write_text(json.dumps(run.app_raw))
    (wd / "job.json").write_text(json.dumps(run.job_order))
    spec = {
        "task_id": run.task_id,
        "app_id": run.app_id,
        "cores": run.cores,
        "memory_mib": run.memory_mib,
        "settings": run.settings,
    }
    (wd / "runspec.json").write_text(json.dumps(spec))
    return wd


def local_paths(value: Any) -> Any:
    """Turn ``file://`` locations in a CWL output object into plain local paths (what RunStatus promises)."""
    if isinstance(value, list):
        return [local_paths(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: local_paths(v) for k, v in value.items()}
    if out.get("class") in ("File", "Directory"):
        loc = str(out.get("location") or out.get("path") or "")
        if loc.startswith("file://"):
            loc = unquote(urlparse(loc).path)
        if loc:
            out["location"] = loc
            out["path"] = loc
    return out


def steps_total(app_raw: dict[str, Any]) -> int:
    """Number of top-level steps of a workflow (1 for a tool); packed ``$graph`` documents use ``#main``."""
    doc = app_raw
    graph = app_raw.get("$graph")
    if isinstance(graph, list):
        doc = next(
            (d for d in graph if str(d.get("id", "")).lstrip("#") == "main"), graph[0] if graph else {}
        )
    if doc.get("class") == "Workflow":
        steps = doc.get("steps") or []
        return max(len(steps), 1)
    return 1


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------
# The engine


class SlurmEngine:
    """One ``sbatch`` per task; state in Slurm and the task directory, so restarts lose nothing."""

    name = "slurm"
    # The dispatcher's poll reads each run's result.json (squeue is cached): looking more often than its
    # default 0.2 s frees a finished task's cores sooner at little cost.
    poll_interval = 0.1

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.python = sys.executable
        self.squeue = Squeue()
        self._gone_since: dict[str, float] = {}
        threading.Thread(target=self._seed_schemas, name="slurm-schema-seed", daemon=True).start()

    def _seed_schemas(self) -> None:
        """Leave parsed CWL schemas in the work dir for jobs to restore (see ``runner.prepare_schemas``)."""
        from bridgehead.domain import cwl
        from bridgehead.engines import runner

        try:
            with cwl.loader_lock():  # request threads may be loading apps with the same schema objects
                runner.seed_schemas(work_root(self.settings) / SCHEMA_DIR)
        except Exception:  # jobs then parse and save the schemas themselves
            log.warning("could not seed the CWL schema cache for slurm jobs", exc_info=True)

    def submit(self, run: RunSpec) -> dict[str, Any]:
        from bridgehead.engines.runner import RUN_SPEC

        wd = write_run_files(run)
        for stale in ("result.json", "progress.json", "started.json", "aborted"):
            (wd / stale).unlink(missing_ok=True)
        spec = {
            "app_raw": run.app_raw,
            "job_order": run.job_order,
            "task_id": run.task_id,
            "app_id": run.app_id,
        }
        write_json_atomic(wd / RUN_SPEC, {**spec, "settings": run.settings})
        script = wd / "job.sh"
        script.write_text(job_script(self.python, wd, work_root(self.settings) / SCHEMA_DIR))
        cmd = [
            "sbatch",
            "--parsable",
            "-J",
            f"bridgehead-{run.task_id}",
            f"--comment=bridgehead-{run.task_id}",
            "-D",
            str(wd),
            "-o",
            str(wd / "stdout.log"),
            "-e",
            str(wd / "stderr.log"),
            "-c",
            str(max(run.cores, 1)),
            f"--mem={max(run.memory_mib, 1)}M",
        ]
        if self.settings.slurm_partition:
            cmd += ["-p", self.settings.slurm_partition]
        cmd.append(str(script))
        job_id = _run(cmd, timeout=60).strip().split(";")[0]
        (wd / "slurm_job_id").write_text(job_id)
        return {"job_id": job_id, "workdir": str(wd)}

    def poll(self, handle: dict[str, Any]) -> RunStatus:
        wd, job_id = Path(handle["workdir"]), str(handle["job_id"])
        result = read_json(wd / "result.json")
        if isinstance(result, dict):
            self._gone_since.pop(job_id, None)
            return self._finished(wd, result)
        started = read_json(wd / "started.json")
        started_at = started.get("started_at") if isinstance(started, dict) else None
        listed = self.squeue.snapshot().get(job_id)
        if listed is not None and listed[0] not in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"):
            self._gone_since.pop(job_id, None)
            if listed[0] in _PENDING:
                return RunStatus(state="queued", message=f"Slurm job {job_id} is {listed[0].lower()}")
            return self._running(wd, started_at)
        if (wd / "aborted").exists():
            return RunStatus(
                state="aborted", message="Aborted", started_at=started_at, finished_at=time.time()
            )
        # Left the queue without a result: allow the shared filesystem a moment before calling it lost.
        first = self._gone_since.setdefault(job_id, time.monotonic())
        if time.monotonic() - first < _GONE_GRACE_S:
            return self._running(wd, started_at)
        self._gone_since.pop(job_id, None)
        detail = tail(wd / "stderr.log", 5)
        return RunStatus(
            state="failed",
            message=f"Slurm job {job_id} ended without a result" + (f": {detail}" if detail else ""),
            started_at=started_at,
            finished_at=time.time(),
            engine_log=wd / "stderr.log" if (wd / "stderr.log").exists() else None,
        )

    def cancel(self, handle: dict[str, Any]) -> None:
        wd = Path(handle["workdir"])
        (wd / "aborted").touch()
        if not scancel_and_wait(self.squeue, [str(handle["job_id"])]):
            log.warning("Slurm job %s is still listed after scancel", handle["job_id"])

    def recover(self, handle: dict[str, Any]) -> RunStatus:
        # Nothing lives in this process: Slurm keeps the job and the job writes its own result.
        return self.poll(handle)

    # Up to twice the partition's capacity is submitted: Slurm queues the rest and starts each job on
    # its own scheduling tick as a slot frees (see Dispatcher._free).
    admission_factor = 2

    def capacity(self) -> tuple[int, int]:
        return cluster_capacity(self.settings.slurm_partition)

    def _running(self, wd: Path, started_at: float | None) -> RunStatus:
        progress = read_json(wd / "progress.json")
        data = progress if isinstance(progress, dict) else {}
        data.setdefault("steps_total", self._steps(wd))
        data["started_at"] = data.get("started_at") or started_at
        return status_from_record("running", data, wd)

    def _steps(self, wd: Path) -> int:
        app = read_json(wd / "app.cwl")
        return steps_total(app) if isinstance(app, dict) else 1

    def _finished(self, wd: Path, result: dict[str, Any]) -> RunStatus:
        if (wd / "aborted").exists():
            result = {**result, "state": "aborted", "message": "Aborted by user", "outputs": None}
        return status_from_record(str(result.get("state", "failed")), result, wd)


def status_from_record(state: str, data: dict[str, Any], wd: Path) -> RunStatus:
    """A RunStatus from the runner's ``progress.json`` / ``result.json`` (the local engine's format)."""
    jobs = [
        JobInfo(
            name=str(j.get("name", "job")),
            status=j.get("status", "FAILED"),
            start_time=j.get("start_time"),
            end_time=j.get("end_time"),
            command_line=str(j.get("command_line", "")),
            logs={k: Path(v) for k, v in (j.get("logs") or {}).items() if Path(v).exists()},
        )
        for j in data.get("jobs") or []
        if isinstance(j, dict)
    ]
    engine_log = wd / "engine.log"
    return RunStatus(
        state=state if state in ("queued", "running", "completed", "failed", "aborted") else "failed",  # type: ignore[arg-type]
        message=str(data.get("message") or ""),
        outputs=data.get("outputs") if state == "completed" else None,
        exit_code=data.get("exit_code"),
        steps_completed=int(data.get("steps_completed") or 0),
        steps_total=int(data.get("steps_total") or 1),
        jobs=jobs,
        engine_log=engine_log if engine_log.exists() else None,
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
    )


# ---------------------------------------------------------------------------------------------------
# The job side: runs on the compute node inside the sbatch allocation
#
# The job loads the local engine's runner (``runner.py``, stdlib-only at import) straight from its file
# instead of importing the ``bridgehead`` package: the package pulls in the server's settings stack
# (pydantic), which costs about half a second of CPU per task and is of no use on a compute node.
# ``run_child`` expects to be a forked child that may ``setsid()`` (a batch script can already lead its
# process group, where ``setsid`` fails), so the job forks once and waits; Slurm still tracks, and on
# ``scancel`` kills, the whole process tree. The job ends with ``os._exit``: tearing down an interpreter
# holding cwltool takes a quarter of a second that keeps the job's CPU allocated.
# argv: runner.py path, task directory, schema cache directory (parsed CWL schemas shared by jobs:
# ~2.5 s of CPU each job would otherwise spend parsing them).

JOB_MAIN = """
import importlib.util, json, os, socket, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("bridgehead_slurm_runner", sys.argv[1])
runner = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = runner
spec.loader.exec_module(runner)
wd = Path(sys.argv[2])
runner.write_json_atomic(
    wd / "started.json", {"started_at": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
)
runner._install_hooks()
run = json.loads((wd / runner.RUN_SPEC).read_text())
if len(sys.argv) > 3:
    try:
        runner.prepare_schemas(Path(sys.argv[3]), run["app_raw"])
    except Exception as exc:  # only slower without it: the tool load parses what it needs
        sys.stderr.write(f"CWL schema cache not used: {exc}\\n")  # the job's own log
tool, load_error = None, None
try:
    tool = runner.load_tool(run["app_raw"], wd / "app-cache")
except Exception as exc:
    load_error = str(exc)
pid = os.fork()
if pid == 0:
    runner.run_child(wd, tool, load_error)
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
"""


def job_script(python: str, workdir: Path, schema_dir: Path) -> str:
    runner_py = Path(__file__).resolve().with_name("runner.py")
    argv = (python, "-c", JOB_MAIN, str(runner_py), str(workdir), str(schema_dir))
    args = " ".join(shlex.quote(a) for a in argv)
    return f"#!/bin/sh\nexec {args}\n"
