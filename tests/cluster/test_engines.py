"""Engine-level tests of the slurm and toil engines on the one-node Slurm cluster (RunSpecs built by hand)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bridgehead.engines.slurm import SlurmEngine
from bridgehead.engines.toil import ToilEngine

from .conftest import (
    data_file,
    needs_slurm,
    processes_matching,
    run_spec,
    settings_for,
    squeue_ids,
    squeue_with_comment,
    wait,
)

pytestmark = [pytest.mark.slurm, needs_slurm]


def test_slurm_engine_runs_a_tool(tmp_path: Path) -> None:
    engine = SlurmEngine(settings_for(tmp_path))
    run = run_spec(tmp_path, "wc.cwl", {"infile": data_file(tmp_path, ["a", "b", "c", "d"])})
    handle = engine.submit(run)
    assert handle["job_id"].isdigit()
    status = wait(engine, handle)
    assert status.state == "completed", status.message
    count = status.outputs["count"] if status.outputs else {}
    assert Path(count["location"]).read_text().split()[0] == "4"
    assert Path(count["location"]).is_relative_to(run.workdir.resolve() / "outputs")
    assert status.jobs and status.jobs[0].status == "DONE"
    # A restarted dispatcher sees the same verdict from disk and Slurm alone.
    again = SlurmEngine(settings_for(tmp_path)).recover(handle)
    assert again.state == "completed" and again.outputs == status.outputs


def test_slurm_engine_reports_a_failing_tool(tmp_path: Path) -> None:
    engine = SlurmEngine(settings_for(tmp_path))
    handle = engine.submit(run_spec(tmp_path, "fail.cwl", {}))
    status = wait(engine, handle)
    assert status.state == "failed"
    assert status.exit_code == 3
    stderr = [p for job in status.jobs for name, p in job.logs.items() if name == "stderr"]
    assert stderr and "broken input" in stderr[0].read_text()


def test_slurm_engine_abort_leaves_nothing(tmp_path: Path) -> None:
    engine = SlurmEngine(settings_for(tmp_path))
    handle = engine.submit(run_spec(tmp_path, "sleep.cwl", {"seconds": 737}))
    deadline = time.monotonic() + 60
    while not processes_matching("sleep 737") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_matching("sleep 737"), "the tool never started"
    started = time.monotonic()
    engine.cancel(handle)
    assert time.monotonic() - started < 5
    assert handle["job_id"] not in squeue_ids()
    assert not processes_matching("sleep 737")
    assert engine.poll(handle).state == "aborted"


def test_toil_on_slurm_runs_a_two_step_workflow(tmp_path: Path) -> None:
    engine = ToilEngine(settings_for(tmp_path, toil_batch_system="slurm"))
    run = run_spec(tmp_path, "sort_count.cwl", {"infile": data_file(tmp_path, ["c", "a", "b"])})
    handle = engine.submit(run)
    status = wait(engine, handle, timeout=180)
    assert status.state == "completed", status.message
    assert (status.steps_completed, status.steps_total) == (2, 2)
    out = Path(status.outputs["count"]["location"]) if status.outputs else Path("/missing")
    assert out.read_text().split()[0] == "3"
    # The jobs really went through Slurm.
    assert "batch system ID" in (run.workdir / "toil.log").read_text()
    assert not squeue_with_comment(f"bridgehead-{run.task_id}")


def test_toil_abort_cancels_slurm_jobs(tmp_path: Path) -> None:
    engine = ToilEngine(settings_for(tmp_path, toil_batch_system="slurm"))
    run = run_spec(tmp_path, "sleep.cwl", {"seconds": 739})
    handle = engine.submit(run)
    deadline = time.monotonic() + 90
    while not processes_matching("sleep 739") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert processes_matching("sleep 739"), "the tool never started"
    assert squeue_with_comment(f"bridgehead-{run.task_id}"), "the Toil job is not tagged for this task"
    engine.cancel(handle)
    assert not squeue_with_comment(f"bridgehead-{run.task_id}")
    assert not processes_matching("sleep 739")
    status = engine.poll(handle)
    assert status.state == "aborted"


def test_toil_recover_restarts_a_killed_leader(tmp_path: Path) -> None:
    engine = ToilEngine(settings_for(tmp_path, toil_batch_system="slurm"))
    run = run_spec(tmp_path, "sleep.cwl", {"seconds": 8})
    handle = engine.submit(run)
    wd = run.workdir.resolve()
    deadline = time.monotonic() + 90
    while not squeue_with_comment(f"bridgehead-{run.task_id}") and time.monotonic() < deadline:
        time.sleep(0.3)
    old_jobs = squeue_with_comment(f"bridgehead-{run.task_id}")
    assert old_jobs
    # kill -9 the leader and its wrapper: the Slurm job is orphaned, as after a worker crash.
    for record in ("leader.pid", "wrapper.pid"):
        os.kill(int((wd / record).read_text().split()[0]), signal.SIGKILL)
    time.sleep(0.5)
    fresh = ToilEngine(settings_for(tmp_path, toil_batch_system="slurm"))
    status = fresh.recover(handle)
    assert status.state == "running"
    assert not set(old_jobs) & set(squeue_with_comment(f"bridgehead-{run.task_id}")), "old jobs not fenced"
    final = wait(fresh, handle, timeout=180)
    assert final.state == "completed", final.message
    assert "--restart" in (wd / "leader.json").read_text() or "--restart" in (wd / "leader.log").read_text()


def test_toil_single_machine_with_interruptible_instances(tmp_path: Path) -> None:
    engine = ToilEngine(settings_for(tmp_path, toil_batch_system="single_machine"))
    run = run_spec(
        tmp_path, "wc.cwl", {"infile": data_file(tmp_path, ["x", "y"])}, use_interruptible_instances=True
    )
    handle = engine.submit(run)
    status = wait(engine, handle, timeout=180)
    assert status.state == "completed", status.message
    assert "--defaultPreemptible=true" in (run.workdir / "leader.json").read_text()
    assert "--slurmArgs" not in (run.workdir / "leader.json").read_text()
    assert status.outputs is not None
    assert Path(status.outputs["count"]["location"]).read_text().split()[0] == "2"
