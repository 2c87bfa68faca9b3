"""Bad configuration refuses to start, with a message that says what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridgehead.engines import slurm, toil

from .conftest import needs_slurm, settings_for


def bridgehead(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEHEAD_")}
    full["BRIDGEHEAD_DATA_DIR"] = str(tmp / "data")
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bridgehead", *args], env=full, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("engine", ["slurm", "toil"])
def test_missing_scheduler_refuses_worker_and_serve(engine: str, tmp_path: Path) -> None:
    for command in (["worker"], ["serve", "--port", "0"]):
        done = bridgehead([*command, "--engine", engine], tmp_path, PATH="/nonexistent")
        assert done.returncode == 2, done.stderr
        assert "sbatch" in done.stderr and "on PATH" in " ".join(done.stderr.split()), done.stderr


def test_unreachable_database_refuses_worker(tmp_path: Path) -> None:
    done = bridgehead(
        ["worker", "--engine", "fake", "--database-url", "postgresql+psycopg://u:secret@127.0.0.1:9/none"],
        tmp_path,
    )
    assert done.returncode == 2
    text = " ".join(done.stderr.split())
    assert "cannot prepare the database" in text and "BRIDGEHEAD_DATABASE_URL" in text
    assert "secret" not in text  # the password is masked


def test_heartbeat_must_be_shorter_than_dead_after(tmp_path: Path) -> None:
    done = bridgehead(["worker", "--engine", "fake", "--heartbeat", "20", "--dead-after", "15"], tmp_path)
    assert done.returncode == 2
    assert "--heartbeat must be positive and shorter than --dead-after" in done.stderr
    assert not (tmp_path / "data").exists(), "nothing is prepared before the options are checked"


def test_missing_toil_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toil, "toil_binary", lambda: None)
    problems = toil.preflight(settings_for(tmp_path, toil_batch_system="single_machine"), probe=False)
    assert any("toil-cwl-runner" in p and "pip install" in p for p in problems)


@needs_slurm
def test_work_dir_in_memory_is_refused(tmp_path: Path) -> None:
    shm = Path("/dev/shm") / f"bh-{os.getpid()}"
    try:
        done = bridgehead(["worker", "--engine", "slurm"], tmp_path, BRIDGEHEAD_WORK_DIR=str(shm))
        assert done.returncode == 2
        assert "tmpfs" in done.stderr and "shared filesystem" in " ".join(done.stderr.split())
    finally:
        if shm.exists():
            shm.rmdir()


@needs_slurm
def test_unwritable_work_dir_is_refused(tmp_path: Path) -> None:
    done = bridgehead(["worker", "--engine", "toil"], tmp_path, BRIDGEHEAD_WORK_DIR="/proc/bridgehead-work")
    assert done.returncode == 2
    assert "is not writable" in " ".join(done.stderr.split())


@needs_slurm
def test_probe_job_must_reach_the_work_dir(tmp_path: Path) -> None:
    assert slurm.probe_shared(tmp_path, None, timeout=60) == []
    assert not list(tmp_path.glob(".probe-*")), "the marker is cleaned up"
    failed = slurm.probe_shared(tmp_path, "no-such-partition", timeout=5)
    assert failed and "cannot submit a probe job" in failed[0]
    done = bridgehead(
        ["worker", "--engine", "slurm"], tmp_path, BRIDGEHEAD_SLURM_PARTITION="no-such-partition"
    )
    assert done.returncode == 2 and "probe job" in done.stderr
