"""Helpers for the cluster tests: Slurm must be up (``scripts/slurm-services.sh``) or they skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridgehead.config import Settings
from bridgehead.engines.base import Engine, RunSpec, RunStatus

CWL = Path(__file__).parent / "cwl"
SLURM = bool(os.environ.get("BRIDGEHEAD_TEST_SLURM")) and shutil.which("sbatch") is not None

needs_slurm = pytest.mark.skipif(not SLURM, reason="BRIDGEHEAD_TEST_SLURM unset or sbatch missing")


def app(name: str) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((CWL / name).read_text())
    return raw


def run_spec(tmp: Path, cwl: str, job: dict[str, Any], **settings: Any) -> RunSpec:
    task_id = str(uuid.uuid4())
    return RunSpec(
        task_id=task_id,
        app_id=f"tester/p/{cwl.removesuffix('.cwl')}/0",
        app_raw=app(cwl),
        job_order=job,
        workdir=tmp / "tasks" / task_id,
        settings=settings,
    )


def data_file(tmp: Path, lines: list[str]) -> dict[str, Any]:
    path = tmp / f"data-{uuid.uuid4().hex[:6]}.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return {"class": "File", "location": str(path)}


def settings_for(tmp: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp, **kw)


def wait(
    engine: Engine, handle: dict[str, Any], timeout: float = 120, until: tuple[str, ...] = ()
) -> RunStatus:
    """Poll until the run is finished (or reaches one of ``until``)."""
    deadline = time.monotonic() + timeout
    while True:
        status = engine.poll(handle)
        if status.state in ("completed", "failed", "aborted") or status.state in until:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"run still {status.state} after {timeout} s: {status}")
        time.sleep(0.3)


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def squeue_names() -> list[str]:
    """Names and comments of every job Slurm still lists (the engines tag both with the task id)."""
    out = subprocess.run(["squeue", "-h", "-o", "%j|%k"], capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def squeue_with_comment(comment: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
    return [line.split("|")[0] for line in out.splitlines() if line.strip().endswith("|" + comment)]


def processes_matching(needle: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if needle in line and "ps -eo" not in line]
