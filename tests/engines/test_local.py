"""The local engine on its own: hand-built RunSpecs, real cwltool, real processes (no server)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridgehead.config import Settings
from bridgehead.engines.base import RunSpec, RunStatus
from bridgehead.engines.local import LocalEngine, group_members

WC = yaml.safe_load(
    """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [wc, -l]
inputs:
  infile: {type: File, inputBinding: {position: 1}}
outputs:
  count: {type: stdout}
stdout: count.txt
"""
)

FAIL = yaml.safe_load(
    """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, "echo about to fail >&2; echo partial; exit 3"]
inputs: []
outputs: []
"""
)

SLEEP = yaml.safe_load(
    """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, "sleep 60 & sleep 61; wait"]
inputs: []
outputs: []
"""
)

WF = yaml.safe_load(
    """
cwlVersion: v1.2
class: Workflow
inputs:
  infile: File
outputs:
  count: {type: File, outputSource: count/out}
steps:
  sort:
    in: {f: infile}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: sort
      inputs: {f: {type: File, inputBinding: {position: 1}}}
      outputs: {out: {type: stdout}}
      stdout: sorted.txt
  count:
    in: {f: sort/out}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [wc, -l]
      inputs: {f: {type: File, inputBinding: {position: 1}}}
      outputs: {out: {type: stdout}}
      stdout: count.txt
"""
)


def tool(command: list[str], outputs: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "cwlVersion": "v1.2",
        "class": "CommandLineTool",
        "baseCommand": command,
        "inputs": [],
        "outputs": outputs or [],
    }
    doc.update(extra or {})
    return doc


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    eng = LocalEngine(Settings(data_dir=tmp_path_factory.mktemp("data")), warm=False)
    try:
        yield eng
    finally:
        eng.close()


def spec(tmp: Path, app: dict[str, Any], job: dict[str, Any] | None = None, name: str = "t") -> RunSpec:
    return RunSpec(task_id=name, app_id=f"u/p/{name}/0", app_raw=app, job_order=job or {}, workdir=tmp / name)


def wait(engine: LocalEngine, handle: dict[str, Any], timeout: float = 30) -> RunStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = engine.poll(handle)
        if status.state not in ("queued", "running"):
            return status
        time.sleep(0.02)
    raise AssertionError(f"run did not finish: {engine.poll(handle)}")


def data_file(tmp: Path, lines: int = 5) -> Path:
    path = tmp / "data.txt"
    path.write_text("".join(f"line {i}\n" for i in range(lines, 0, -1)))
    return path


def test_tool_with_file_in_and_out(engine: LocalEngine, tmp_path: Path) -> None:
    src = data_file(tmp_path, 7)
    handle = engine.submit(spec(tmp_path, WC, {"infile": {"class": "File", "location": str(src)}}))
    assert set(handle) == {"pid", "start_time", "workdir"}
    status = wait(engine, handle)
    assert status.state == "completed", status.message
    assert status.exit_code == 0
    out = status.outputs["count"]  # type: ignore[index]
    assert out["class"] == "File" and out["basename"] == "count.txt"
    assert Path(out["location"]).parent == Path(handle["workdir"]) / "outputs"
    assert Path(out["location"]).read_text().split()[0] == "7"
    assert out["checksum"].startswith("sha1$") and out["size"] == Path(out["location"]).stat().st_size
    [job] = status.jobs
    assert job.status == "DONE" and "wc -l" in job.command_line and job.start_time and job.end_time
    assert job.logs["stdout"].read_text().split()[0] == "7"  # a declared stdout is kept as the log too
    assert job.logs["engine.log"] == status.engine_log
    assert status.engine_log is not None and "completed success" in status.engine_log.read_text()
    assert status.started_at is not None and status.steps_completed == status.steps_total == 1


def test_failing_tool_keeps_exit_code_and_stderr(engine: LocalEngine, tmp_path: Path) -> None:
    status = wait(engine, engine.submit(spec(tmp_path, FAIL)))
    assert status.state == "failed"
    assert status.exit_code == 3
    assert "exited with code 3" in status.message
    [job] = status.jobs
    assert job.status == "FAILED"
    assert "about to fail" in job.logs["stderr"].read_text()
    assert "partial" in job.logs["stdout"].read_text()
    assert status.engine_log is not None and "exited with status: 3" in status.engine_log.read_text()


def test_two_step_workflow_counts_steps(engine: LocalEngine, tmp_path: Path) -> None:
    src = data_file(tmp_path, 4)
    status = wait(engine, engine.submit(spec(tmp_path, WF, {"infile": {"class": "File", "path": str(src)}})))
    assert status.state == "completed", status.message
    assert (status.steps_completed, status.steps_total) == (2, 2)
    assert [j.name for j in status.jobs] == ["sort", "count"]
    assert all(j.status == "DONE" for j in status.jobs)
    assert Path(status.outputs["count"]["path"]).read_text().split()[0] == "4"  # type: ignore[index]


def ps_group(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True, check=True)
    return [
        line
        for line in out.stdout.splitlines()
        if line.split()[0] == str(pgid) and "Z" not in line.split()[1]
    ]


def test_abort_leaves_no_process(engine: LocalEngine, tmp_path: Path) -> None:
    handle = engine.submit(spec(tmp_path, SLEEP))
    deadline = time.monotonic() + 10
    while not engine.poll(handle).jobs and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert len(ps_group(handle["pid"])) >= 3  # runner, sh, two sleeps
    started = time.monotonic()
    engine.cancel(handle)
    assert time.monotonic() - started < 1.0
    assert ps_group(handle["pid"]) == []
    assert group_members(handle["pid"]) == []
    status = engine.poll(handle)
    assert status.state == "aborted"
    assert status.message == "Aborted by user"


def test_missing_command_fails_clearly(engine: LocalEngine, tmp_path: Path) -> None:
    status = wait(engine, engine.submit(spec(tmp_path, tool(["no-such-command-xyz"]))))
    assert status.state == "failed"
    assert "no-such-command-xyz" in status.message
    assert "not found" in status.message


def test_output_glob_matching_nothing_fails(engine: LocalEngine, tmp_path: Path) -> None:
    app = tool(["true"], outputs={"res": {"type": "File", "outputBinding": {"glob": "missing.txt"}}})
    status = wait(engine, engine.submit(spec(tmp_path, app)))
    assert status.state == "failed"
    assert "res" in status.message and "missing.txt" in status.message
    assert status.jobs[0].status == "FAILED"


def test_docker_requirement_fails_but_hint_is_ignored(engine: LocalEngine, tmp_path: Path) -> None:
    docker = [{"class": "DockerRequirement", "dockerPull": "alpine:3"}]
    status = wait(
        engine, engine.submit(spec(tmp_path, tool(["true"], extra={"requirements": docker}), name="r"))
    )
    assert status.state == "failed" and status.exit_code == 33
    assert "DockerRequirement" in status.message and "no container engine" in status.message
    [job] = status.jobs  # no tool ran: one "engine" entry carries the engine log
    assert job.name == "engine" and job.status == "FAILED"
    assert "DockerRequirement" in job.logs["engine.log"].read_text()
    status = wait(engine, engine.submit(spec(tmp_path, tool(["true"], extra={"hints": docker}), name="h")))
    assert status.state == "completed", status.message
    assert status.engine_log is not None and "DockerRequirement hint ignored" in status.engine_log.read_text()


def test_invalid_document_fails_with_reason(engine: LocalEngine, tmp_path: Path) -> None:
    status = wait(engine, engine.submit(spec(tmp_path, {"cwlVersion": "v1.2", "class": "CommandLineTool"})))
    assert status.state == "failed"
    assert status.message.startswith("The app could not be loaded")


def test_missing_input_file_fails(engine: LocalEngine, tmp_path: Path) -> None:
    job = {"infile": {"class": "File", "location": str(tmp_path / "gone.txt")}}
    status = wait(engine, engine.submit(spec(tmp_path, WC, job)))
    assert status.state == "failed"
    assert "gone.txt" in status.message


def test_recover_after_supervisor_crash(tmp_path: Path) -> None:
    """A restarted server adopts a live runner, collects a finished one and fails a vanished one."""
    settings = Settings(data_dir=tmp_path / "data")
    first = LocalEngine(settings, warm=False)
    app = tool(
        ["sh", "-c", "sleep 1.5; echo done > out.txt"],
        outputs={"o": {"type": "File", "outputBinding": {"glob": "out.txt"}}},
    )
    live = first.submit(spec(tmp_path, app, name="live"))
    lost = first.submit(spec(tmp_path, SLEEP, name="lost"))
    assert first._proc is not None
    first._proc.kill()  # the server (and its supervisor) die as with kill -9
    first._proc.wait()
    time.sleep(0.3)
    os.killpg(lost["pid"], signal.SIGKILL)  # and this runner dies without leaving a result
    deadline = time.monotonic() + 5
    while group_members(lost["pid"]) and time.monotonic() < deadline:
        time.sleep(0.02)

    second = LocalEngine(settings, warm=False)
    assert second.recover(live).state == "running"
    lost_status = second.recover(lost)
    assert lost_status.state == "failed" and "ended without a result" in lost_status.message
    status = wait(second, live)
    assert status.state == "completed", status.message
    assert Path(status.outputs["o"]["path"]).read_text() == "done\n"  # type: ignore[index]
    assert second.recover(live).state == "completed"
    reused = dict(lost, start_time=(lost["start_time"] or 0) + 1, pid=os.getpid())
    assert second.recover(reused).state == "failed"  # a recycled pid is not mistaken for the runner
    second.close()


def test_capacity_uses_settings_or_machine(tmp_path: Path) -> None:
    assert LocalEngine(
        Settings(data_dir=tmp_path, max_cores=3, max_memory_mib=2048), warm=False
    ).capacity() == (3, 2048)
    cores, memory = LocalEngine(Settings(data_dir=tmp_path), warm=False).capacity()
    assert cores == os.cpu_count() and memory > 256


def _supervisor_family(root: Path) -> list[int]:
    """Supervisor and spare runners of one engine: they share the supervisor's command line."""
    import psutil

    marker = str(root / "apps")
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if marker in (proc.info["cmdline"] or []):
            found.append(proc.info["pid"])
    return found


def _gone(root: Path, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while _supervisor_family(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _supervisor_family(root)


def test_spare_runners_take_runs_and_leave_with_the_supervisor(tmp_path: Path) -> None:
    eng = LocalEngine(Settings(data_dir=tmp_path / "data"), warm=False)
    try:
        first = eng.submit(spec(tmp_path, tool(["true"]), name="a"))
        assert wait(eng, first).state == "completed"
        # The second run of a tool the supervisor has loaded goes to the spare forked after the first.
        spare = [p for p in _supervisor_family(eng.root) if p != eng._supervisor().pid]
        assert len(spare) == 1 and os.getsid(spare[0]) == spare[0]  # detached before any request
        second = eng.submit(spec(tmp_path, tool(["true"]), name="b"))
        assert second["pid"] == spare[0]
        assert wait(eng, second).state == "completed"
    finally:
        eng.close()
    assert _gone(eng.root), "a spare runner outlived its supervisor"


def test_spare_exits_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    eng = LocalEngine(Settings(data_dir=tmp_path / "data"), warm=False)
    try:
        supervisor = eng._supervisor()
        deadline = time.monotonic() + 10
        while len(_supervisor_family(eng.root)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_supervisor_family(eng.root)) == 2  # the supervisor and its first spare
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
        assert _gone(eng.root), "the spare did not exit after its supervisor was killed"
    finally:
        eng.close()
