"""The child side of the ``local`` engine: a supervisor process and the per-task runners it forks.

``python -m bridgehead.engines.runner`` is the supervisor. The server starts it once (with a clean file
descriptor table, so no listening socket or database connection leaks into tasks), it imports cwltool and
keeps loaded tools cached per CWL document, then reads one request per line on stdin: the path of a
task's ``run.json``. Each request goes to a runner in its own session (``setsid()``: its own process
group, so abort is one ``killpg``), normally a spare forked ahead of time (see ``_Spare``); the runner
runs the tool in-process with a fresh executor, and writes
``progress.json`` as jobs and steps finish and ``result.json`` at the end, both atomically. The reply
(one JSON line on stdout) is the runner's pid and kernel start time, which identify it after a restart.

The supervisor ignores SIGCHLD so finished runners are reaped by the kernel; runners restore the
default so cwltool can wait for its tools.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger("bridgehead.runner")

RESULT = "result.json"
PROGRESS = "progress.json"
ENGINE_LOG = "engine.log"
RUN_SPEC = "run.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers never see a half-written file: write a sibling, then rename over the target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks since boot (None if gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing paren.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


# --------------------------------------------------------------------------------------------------
# Job and step recording (installed once in the supervisor; state lives in the forked runner)


class Recorder:
    """Collects per-job information and step progress for one run, and mirrors it to progress.json."""

    def __init__(self, workdir: Path, steps_total: int, top_id: str) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.steps_total = steps_total
        self.steps_completed = 0
        self.top_id = top_id
        self.jobs: dict[str, dict[str, Any]] = {}
        self.started_at: float | None = None
        self.last_failed_rcode: int | None = None
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        return {
            "steps_completed": self.steps_completed,
            "steps_total": self.steps_total,
            "jobs": list(self.jobs.values()),
            "started_at": self.started_at,
            "engine_log": str(self.workdir / ENGINE_LOG),
        }

    def flush(self) -> None:
        write_json_atomic(self.workdir / PROGRESS, self.snapshot())

    def job_started(self, name: str, commands: list[str]) -> None:
        import shlex

        with self.lock:
            now = time.time()
            if self.started_at is None:
                self.started_at = now
            self.jobs[name] = {
                "name": name,
                "status": "RUNNING",
                "start_time": now,
                "end_time": None,
                "command_line": " ".join(shlex.quote(c) for c in commands),
                "exit_code": None,
                "logs": {},
            }
            self.flush()

    def job_finished(self, name: str, rcode: int | None, logs: dict[str, str]) -> None:
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                return
            job["end_time"] = time.time()
            job["exit_code"] = rcode
            job["logs"] = logs
            job["status"] = "DONE" if rcode == 0 else "FAILED"
            if rcode not in (0, None):
                self.last_failed_rcode = rcode
            self.flush()

    def job_status(self, name: str, process_status: str) -> None:
        """Final verdict from cwltool (a zero exit code can still fail on output collection)."""
        with self.lock:
            job = self.jobs.get(name)
            if job is not None:
                job["status"] = "DONE" if process_status == "success" else "FAILED"
                self.flush()

    def step_done(self, workflow_id: str) -> None:
        with self.lock:
            if workflow_id == self.top_id:
                self.steps_completed += 1
                self.flush()


CURRENT: Recorder | None = None


def _install_hooks() -> None:
    """Wrap cwltool's process launch, job verdict and workflow step completion to feed ``CURRENT``."""
    import cwltool.job
    import cwltool.workflow_job

    original_popen = cwltool.job._job_popen

    def job_popen(commands: list[str], *args: Any, **kwargs: Any) -> int:
        rec = CURRENT
        name = str(kwargs.get("name") or "job")
        if rec is None:
            return int(original_popen(commands, *args, **kwargs))
        declared = {"stdout": kwargs.get("stdout_path"), "stderr": kwargs.get("stderr_path")}
        logs: dict[str, str] = {}
        for stream, path in declared.items():
            mine = str(rec.logs / f"{name}.{stream}")
            logs[stream] = mine
            if path is None:  # undeclared: capture into the task's log directory
                kwargs[f"{stream}_path"] = mine
        rec.job_started(name, commands)
        rcode: int | None = None
        try:
            rcode = int(original_popen(commands, *args, **kwargs))
            return rcode
        finally:
            for stream, path in declared.items():  # declared streams are outputs: keep a copy as the log
                if path is not None and os.path.exists(path):
                    shutil.copyfile(path, logs[stream])
            rec.job_finished(name, rcode, logs)

    cwltool.job._job_popen = job_popen

    original_execute = cwltool.job.JobBase._execute

    def execute(self: Any, *args: Any, **kwargs: Any) -> None:
        callback = self.output_callback
        name = str(self.name)
        if callback is not None:

            def verdict(outputs: Any, status: str) -> None:
                if CURRENT is not None:
                    CURRENT.job_status(name, status)
                callback(outputs, status)

            self.output_callback = verdict
        original_execute(self, *args, **kwargs)

    cwltool.job.JobBase._execute = execute  # type: ignore[method-assign]

    original_receive = cwltool.workflow_job.WorkflowJob.receive_output

    def receive_output(self: Any, *args: Any, **kwargs: Any) -> None:
        if CURRENT is not None:
            CURRENT.step_done(str(self.tool.get("id", "")))
        original_receive(self, *args, **kwargs)

    cwltool.workflow_job.WorkflowJob.receive_output = receive_output  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------------
# Tool loading (supervisor side, cached)

_TOOLS: OrderedDict[str, Any] = OrderedDict()
TOOL_CACHE_SIZE = 256


def tool_key(raw: dict[str, Any]) -> str:
    """The cache key of a CWL document: a digest of its content."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()


def load_tool(
    raw: dict[str, Any], cache_dir: Path | None = None, app_id: str | None = None, key: str | None = None
) -> Any:
    """Load a CWL document once per distinct content (LRU); the same loader that validated the install.

    ``domain/cwl.load_process`` adds the ``sbg`` namespace and loads from memory under the app's id, so
    the supervisor runs exactly what the apps area accepted. ``cache_dir`` is kept for callers that
    pass one; nothing is written there any more.
    """
    from bridgehead.domain.cwl import load_process

    del cache_dir
    key = key or tool_key(raw)
    tool = _TOOLS.get(key)
    if tool is not None:
        _TOOLS.move_to_end(key)
        return tool
    tool = load_process(app_id or f"engine/run/{key[:16]}/0", raw)
    _TOOLS[key] = tool
    while len(_TOOLS) > TOOL_CACHE_SIZE:
        _TOOLS.popitem(last=False)
    return tool


# --------------------------------------------------------------------------------------------------
# Parsed CWL schemas saved between processes (slurm jobs)
#
# A fresh process spends about 2.5 s of CPU in ruamel parsing cwltool's metaschemas before it can load
# the first tool (``cwltool.process.get_schema`` per cwlVersion plus schema-salad's own metaschema);
# the supervisor pays that once, but each slurm job is a new process. The parsed schemas pickle to about
# 1 MB and load in ~50 ms, so the first job on a work directory saves them and later jobs restore them.
# The file lives in the work directory, which is as trusted as the job script the job runs from there.


def _register_normdict_pickling() -> None:
    """schema-salad's ``NormDict`` cannot unpickle by default (it sets items before its normaliser)."""
    import copyreg

    from schema_salad.ref_resolver import NormDict

    def reduce(d: Any) -> Any:
        return NormDict, (d.normalize,), None, None, iter(dict.items(d))

    copyreg.pickle(NormDict, reduce)


def schema_cache_file(directory: Path) -> Path:
    """The cache file for this interpreter, cwltool and schema-salad (a reinstall gives a new name)."""
    import cwltool.process
    import schema_salad._version

    stamp = os.stat(cwltool.process.__file__).st_mtime_ns
    key = f"{sys.version}|{cwltool.process.__file__}|{stamp}|{schema_salad._version.__version__}"
    return directory / f"cwl-schemas-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pickle"


def _restore_schemas(path: Path) -> set[str]:
    """Install the schemas saved in ``path`` into cwltool's cache; the cwlVersions restored."""
    import pickle

    import cwltool.process
    import schema_salad.schema

    try:
        data = path.read_bytes()
    except OSError:
        return set()
    try:
        _register_normdict_pickling()
        schemas, metaschema = pickle.loads(data)  # written by our own jobs (see above)
    except Exception as exc:  # a truncated or foreign file: parse the slow way, the save replaces it
        log.warning("ignoring unreadable CWL schema cache %s: %s", path, exc)
        return set()
    for version, entry in schemas.items():
        cwltool.process.SCHEMA_CACHE.setdefault(version, entry)
    if schema_salad.schema.cached_metaschema is None:
        schema_salad.schema.cached_metaschema = metaschema
    return set(schemas)


def prepare_schemas(directory: Path, raw: dict[str, Any]) -> None:
    """Have the schemas ``raw`` needs parsed before loading it: restored from ``directory`` when an
    earlier job saved them, else parsed here and saved (before any tool load touches the loaders)."""
    import cwltool.process
    import schema_salad.schema

    path = schema_cache_file(directory)
    restored = _restore_schemas(path)
    # Loading a tool asks for its own cwlVersion and, for File/Directory/Any, v1.0's.
    wanted = {"v1.0", str(raw.get("cwlVersion", "v1.0"))}
    missing = wanted - set(cwltool.process.SCHEMA_CACHE)
    if not missing and schema_salad.schema.cached_metaschema is not None:
        return
    schema_salad.schema.get_metaschema()
    for version in missing:
        try:
            cwltool.process.get_schema(version)
        except Exception:  # not a version cwltool knows: the tool load reports it properly
            continue
    if set(cwltool.process.SCHEMA_CACHE) - restored:
        _save_schemas(path)


def seed_schemas(directory: Path, versions: tuple[str, ...] = ("v1.0", "v1.2")) -> None:
    """Save the schemas of ``versions`` for jobs to restore, unless a file is there already.

    The server calls it when its slurm engine starts (it has, or will have, them parsed anyway), so
    that the first jobs do not each spend seconds parsing them; cwlVersions missing from the file are
    added by the first job that needs them. Loading apps leaves these cached schemas unchanged.
    """
    import cwltool.process
    import schema_salad.schema

    path = schema_cache_file(directory)
    if path.exists():
        return
    schema_salad.schema.get_metaschema()
    for version in versions:
        cwltool.process.get_schema(version)
    _save_schemas(path)


def _save_schemas(path: Path) -> None:
    import pickle

    import cwltool.process
    import schema_salad.schema

    schemas = dict(cwltool.process.SCHEMA_CACHE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _register_normdict_pickling()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(pickle.dumps((schemas, schema_salad.schema.cached_metaschema), protocol=5))
        os.replace(tmp, path)
    except Exception as exc:  # only a missed speed-up: the next job parses and tries again
        tmp.unlink(missing_ok=True)
        log.warning("could not save the CWL schema cache %s: %s", path, exc)


def _docker_uses(node: Any, found: dict[str, bool]) -> None:
    """Record whether DockerRequirement appears as a hint and/or a requirement anywhere in the document."""
    if isinstance(node, dict):
        for kind in ("hints", "requirements"):
            entries = node.get(kind)
            if isinstance(entries, dict):  # the map form: {ClassName: {...}}
                classes = [str(k) for k in entries]
            elif isinstance(entries, list):
                classes = [str(e.get("class", "")) for e in entries if isinstance(e, dict)]
            else:
                classes = []
            if any(c.endswith("DockerRequirement") for c in classes):
                found[kind] = True
        for value in node.values():
            _docker_uses(value, found)
    elif isinstance(node, list):
        for value in node:
            _docker_uses(value, found)


# --------------------------------------------------------------------------------------------------
# The runner (forked child)


def _to_uri(value: Any) -> Any:
    """Job order locations arrive as absolute paths; cwltool wants file:// URIs."""
    if isinstance(value, list):
        return [_to_uri(v) for v in value]
    if isinstance(value, dict):
        out = {k: _to_uri(v) for k, v in value.items()}
        if out.get("class") in ("File", "Directory"):
            for key in ("location", "path"):
                loc = out.get(key)
                if isinstance(loc, str) and loc.startswith("/"):
                    out.pop("path", None)
                    out["location"] = "file://" + loc
                    break
        return out
    return value


def _to_paths(value: Any) -> Any:
    """Output locations become plain local paths (what the engine interface promises)."""
    if isinstance(value, list):
        return [_to_paths(v) for v in value]
    if isinstance(value, dict):
        out = {k: _to_paths(v) for k, v in value.items()}
        loc = out.get("location")
        if out.get("class") in ("File", "Directory") and isinstance(loc, str) and loc.startswith("file://"):
            from schema_salad.ref_resolver import uri_file_path

            out["location"] = out["path"] = uri_file_path(loc)
        return out
    return value


class _LastError(logging.Handler):
    """Remembers the last error cwltool logged, for the task's message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


def _finish(workdir: Path, rec: Recorder | None, state: str, message: str, **extra: Any) -> None:
    if state != "completed":  # the engine log then says why, whatever path ended the run
        log.error("run %s: %s", state, message)
    data: dict[str, Any] = {
        "state": state,
        "message": message,
        "engine_log": str(workdir / ENGINE_LOG),
        "finished_at": time.time(),
    }
    if rec is not None:
        data.update(rec.snapshot())
    data.update(extra)
    write_json_atomic(workdir / RESULT, data)


def run_child(workdir: Path, tool: Any, load_error: str | None) -> None:
    """Body of the forked runner. Never returns: always ends with ``os._exit``."""
    global CURRENT
    rec: Recorder | None = None
    code = 1
    try:
        if os.getsid(0) != os.getpid():  # a spare runner is a session leader already
            os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        logfd = os.open(workdir / ENGINE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        nullfd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nullfd, 0)
        os.dup2(logfd, 1)
        os.dup2(logfd, 2)
        os.close(logfd)
        os.close(nullfd)
        _reset_js_engine()
        spec = json.loads((workdir / RUN_SPEC).read_text())
        steps = tool.tool.get("steps", []) if tool is not None else []
        rec = Recorder(workdir, len(steps) or 1, str(tool.tool.get("id", "")) if tool is not None else "")
        CURRENT = rec

        def on_term(signum: int, frame: Any) -> None:
            # The whole process group got the signal, tools included: record the verdict and go.
            del frame
            _finish(workdir, rec, "aborted", "Aborted by user", exit_code=128 + signum)
            os._exit(128 + signum)

        signal.signal(signal.SIGTERM, on_term)
        rec.flush()
        code = _run(workdir, spec, tool, load_error, rec)
    except BaseException as exc:  # the runner must always leave a verdict behind
        traceback.print_exc()
        _finish(workdir, rec, "failed", f"Engine error: {exc}")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reset_js_engine() -> None:
    """A node process inherited from the supervisor belongs to it: start our own when needed."""
    try:
        from cwl_utils import sandboxjs

        engine = sandboxjs.get_js_engine()
        local = getattr(engine, "localdata", None)
        if local is not None and hasattr(local, "procs"):
            local.procs = {}
        getattr(engine, "processes_to_kill", []).clear()
    except Exception:  # older cwl_utils: nothing cached to reset
        pass


def _run(workdir: Path, spec: dict[str, Any], tool: Any, load_error: str | None, rec: Recorder) -> int:
    from cwltool.context import RuntimeContext
    from cwltool.errors import UnsupportedRequirement, WorkflowException
    from cwltool.executors import SingleJobExecutor

    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    for handler in logging.getLogger("cwltool").handlers:
        handler.setFormatter(fmt)
    last_error = _LastError()
    logging.getLogger("cwltool").addHandler(last_error)
    if tool is None:
        _finish(workdir, rec, "failed", f"The app could not be loaded: {load_error}", exit_code=None)
        return 1
    docker: dict[str, bool] = {}
    _docker_uses(spec["app_raw"], docker)
    if docker.get("requirements"):
        message = (
            "The app requires DockerRequirement but no container engine is configured on this server; "
            "declare it as a hint to run the tool directly"
        )
        _finish(workdir, rec, "failed", message, exit_code=33)
        return 33
    if docker.get("hints"):
        logging.getLogger("cwltool").warning(
            "DockerRequirement hint ignored: no container engine; the tool runs directly on the host"
        )
    outdir = workdir / "outputs"
    for sub in ("outputs", "tmp", "work"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    rc = RuntimeContext(
        {
            "use_container": False,
            "outdir": str(outdir),
            "basedir": str(workdir),
            "tmpdir_prefix": f"{workdir}/tmp/",
            "tmp_outdir_prefix": f"{workdir}/work/",
            "move_outputs": "move",
            "rm_tmpdir": True,
        }
    )
    try:
        out, status = SingleJobExecutor()(tool, _to_uri(spec["job_order"]), rc)
    except UnsupportedRequirement as exc:
        _finish(workdir, rec, "failed", f"Unsupported requirement: {exc}", exit_code=33)
        return 33
    except WorkflowException as exc:
        _finish(workdir, rec, "failed", str(exc), exit_code=rec.last_failed_rcode)
        return 1
    if status == "success" and out is not None:
        rec.steps_completed = rec.steps_total  # a single tool is one step; a workflow has counted its own
        _finish(workdir, rec, "completed", "", outputs=_to_paths(out), exit_code=0)
        return 0
    if rec.last_failed_rcode is not None:
        failed = [j["name"] for j in rec.jobs.values() if j["status"] == "FAILED"]
        message = f"Job {failed[-1] if failed else ''!r} exited with code {rec.last_failed_rcode}"
    else:
        message = last_error.message or f"The run ended with status {status}"
    _finish(workdir, rec, "failed", message, exit_code=rec.last_failed_rcode)
    return 1


# --------------------------------------------------------------------------------------------------
# The supervisor loop


def _preload() -> None:
    """Import now what every runner would otherwise import after the fork, on its way to the tool."""
    import cwltool.context
    import cwltool.errors
    import cwltool.executors
    import schema_salad.ref_resolver

    del cwltool, schema_salad


class _Spare:
    """A runner forked ahead of its request: detached already, waiting on a pipe for its task directory.

    Handing a request to it saves the fork (page tables of a process holding cwltool and every cached
    tool) and the detaching from the start of a run. It serves tools the supervisor had loaded when it
    was forked; a request for a newer one gets a freshly forked runner, and a new spare follows.
    """

    def __init__(self) -> None:
        rfd, self.wfd = os.pipe()
        self.tools = frozenset(_TOOLS)
        gc.freeze()  # see serve()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.wfd)
            _spare_main(rfd)
        os.close(rfd)

    def hand(self, workdir: Path, key: str) -> bool:
        """Give it the run; False when it cannot take it (a tool it lacks, or it is gone)."""
        if key not in self.tools or proc_start_time(self.pid) is None:
            return False
        try:
            os.write(self.wfd, (json.dumps({"workdir": str(workdir), "key": key}) + "\n").encode())
        except OSError:
            return False
        return True

    def retire(self) -> None:
        """Close its pipe: an idle spare reads end-of-file and exits."""
        os.close(self.wfd)


def _spare_main(rfd: int) -> None:
    """Body of a spare: detach now, then wait for one request (or the supervisor's end) and run it."""
    try:
        os.setsid()
        # Let go of the supervisor's pipes at once: a spare must not keep the server waiting on them.
        nullfd = os.open(os.devnull, os.O_RDWR)
        os.dup2(nullfd, 0)
        os.dup2(nullfd, 1)
        os.close(nullfd)
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(rfd, 65536)
            if not chunk:  # the supervisor closed the pipe or exited: nothing to run
                os._exit(0)
            data += chunk
        os.close(rfd)
        request = json.loads(data)
        tool = _TOOLS.get(request["key"])
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    run_child(Path(request["workdir"]), tool, None if tool is not None else "the tool was not loaded")


def serve(cache_dir: Path) -> None:
    """Read run requests from stdin until it closes (the server went away); start one runner per request,
    a spare forked ahead when it can take the request, else a fresh fork."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    _install_hooks()
    _preload()
    out = sys.stdout
    spare = _Spare()
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        used_spare = False
        try:
            request = json.loads(line)
            workdir = Path(request["workdir"])
            tool: Any = None
            load_error: str | None = None
            key = ""
            try:
                spec = json.loads((workdir / RUN_SPEC).read_text())
                key = tool_key(spec["app_raw"])
                tool = load_tool(spec["app_raw"], cache_dir, spec.get("app_id"), key)
            except Exception as exc:
                load_error = str(exc)
            if tool is not None and spare.hand(workdir, key):
                pid, used_spare = spare.pid, True
            else:
                sys.stdout.flush()
                sys.stderr.flush()
                # Everything loaded so far (cwltool, schemas, cached tools) moves out of the collector's
                # reach: a runner's collections then scan only its own objects, and do not write to
                # (and so copy) the pages it shares with the supervisor.
                gc.freeze()
                pid = os.fork()
                if pid == 0:
                    os.close(spare.wfd)
                    run_child(workdir, tool, load_error)
            reply: dict[str, Any] = {"pid": pid, "start_time": proc_start_time(pid)}
        except Exception as exc:
            reply = {"error": str(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if used_spare or not spare.tools.issuperset(_TOOLS):  # used, or missing a tool loaded since
            spare.retire()
            spare = _Spare()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cache = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".bridgehead/engine/apps")
    serve(cache)


if __name__ == "__main__":
    main()
