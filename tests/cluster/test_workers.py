"""Separate ``bridgehead worker`` processes on one PostgreSQL: no task runs twice, crashes are recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sevenbridges as sbg
from sqlalchemy import select

from bridgehead.db.models.cluster import Worker
from bridgehead.embedded import EmbeddedServer

from ..conftest import PG_ADMIN_URL
from .support import (
    ONE_OUTPUT_TOOL,
    claims,
    db_engine,
    output_file_counts,
    run_worker,
    seed_queued,
    start_api_only,
    start_worker,
    stop,
    unfinished,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason="needs BRIDGEHEAD_TEST_POSTGRES_URL")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> Iterator[EmbeddedServer]:
    srv = start_api_only(tmp_path_factory.mktemp("api"), tls_dir)
    api = sbg.Api(url=srv.url, token=srv.token)
    project = api.projects.create(name="cluster", billing_group=api.billing_groups.query()[0].id)
    api.apps.install_app(id=f"{project.id}/hello", raw=ONE_OUTPUT_TOOL)
    srv.project = project.id  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()


def test_two_workers_drain_200_tasks_none_twice(api_only: EmbeddedServer, tmp_path: Path) -> None:
    engine = db_engine(api_only.resolved_database_url)
    ids = seed_queued(engine, api_only.project, "hello", 200, "tester", {"fake_duration": 0.2})  # type: ignore[attr-defined]
    submitted = tmp_path / "submitted.log"
    env = worker_env(api_only, BRIDGEHEAD_MAX_CORES="10")
    env["PYTHONPATH"] = str(REPO)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.counting_worker", f"w{i}", str(submitted)],
            env=env,
            cwd=REPO,
            stdout=(tmp_path / f"w{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in (1, 2)
    ]
    try:
        counts = wait_for(engine, ids, {"COMPLETED", "FAILED"}, timeout=120)
    finally:
        for proc in procs:
            stop(proc)
    assert counts == {"COMPLETED": 200}
    lines = [line.split() for line in submitted.read_text().splitlines()]
    per_task = Counter(task_id for task_id, _ in lines)
    assert len(lines) == 200 and set(per_task) == set(ids), "a task was submitted twice or never"
    per_worker = Counter(pid for _, pid in lines)
    assert len(per_worker) == 2 and min(per_worker.values()) >= 20, f"work was not shared: {per_worker}"
    assert set(claims(engine, ids).values()) == {"w1", "w2"}
    assert set(output_file_counts(engine, ids).values()) == {1}, "outputs ingested twice"


def test_killed_worker_is_recovered_by_its_restart(api_only: EmbeddedServer, tmp_path: Path) -> None:
    engine = db_engine(api_only.resolved_database_url)
    ids = seed_queued(engine, api_only.project, "hello", 12, "tester", {"fake_duration": 3})  # type: ignore[attr-defined]
    log = tmp_path / "worker.log"
    args = ["--engine", "fake", "--id", "steady"]
    first = start_worker(api_only, args, log, BRIDGEHEAD_MAX_CORES="4")
    try:
        wait_for(engine, ids[:1], {"RUNNING"}, timeout=60)
        os.kill(first.pid, signal.SIGKILL)  # tasks in flight, claimed by "steady"
        first.wait()
        in_flight = [t for t, owner in claims(engine, ids).items() if owner == "steady"]
        assert in_flight
        second = start_worker(api_only, args, log, BRIDGEHEAD_MAX_CORES="4")
        try:
            counts = wait_for(engine, ids, {"COMPLETED", "FAILED"}, timeout=90)
        finally:
            stop(second)
    finally:
        stop(first)
    assert counts == {"COMPLETED": 12}, log.read_text()[-3000:]
    assert set(output_file_counts(engine, ids).values()) == {1}


def test_dead_worker_tasks_are_taken_over(api_only: EmbeddedServer, tmp_path: Path) -> None:
    engine = db_engine(api_only.resolved_database_url)
    ids = seed_queued(engine, api_only.project, "hello", 8, "tester", {"fake_duration": 2})  # type: ignore[attr-defined]
    log = tmp_path / "worker.log"
    doomed = start_worker(
        api_only,
        ["--engine", "fake", "--id", "doomed", "--heartbeat", "0.5", "--dead-after", "4"],
        log,
        BRIDGEHEAD_MAX_CORES="4",
    )
    try:
        wait_for(engine, ids[:1], {"RUNNING"}, timeout=60)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        # Tasks it had not finished when it died (those it finished keep its name as history).
        orphans = [
            t
            for t, owner in claims(engine, ids).items()
            if owner == "doomed" and t in unfinished(engine, ids)
        ]
        assert orphans
        rescuer = start_worker(
            api_only,
            ["--engine", "fake", "--id", "rescuer", "--heartbeat", "0.5", "--dead-after", "4"],
            log,
            BRIDGEHEAD_MAX_CORES="4",
        )
        try:
            counts = wait_for(engine, ids, {"COMPLETED", "FAILED"}, timeout=120)
        finally:
            stop(rescuer)
    finally:
        stop(doomed)
    assert counts == {"COMPLETED": 8}, log.read_text()[-3000:]
    owners = claims(engine, ids)
    assert {owners[t] for t in orphans} == {"rescuer"}
    assert "took over" in log.read_text()
    with engine.connect() as conn:
        assert "doomed" not in set(conn.execute(select(Worker.id)).scalars())


def test_worker_id_in_use_is_refused(api_only: EmbeddedServer, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    first = start_worker(api_only, ["--engine", "fake", "--id", "twin"], log)
    try:
        engine = db_engine(api_only.resolved_database_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(select(Worker.id).where(Worker.id == "twin")).first():
                    break
            time.sleep(0.2)
        dup = run_worker(api_only, ["--engine", "fake", "--id", "twin"])
        assert dup.returncode == 2
        assert "worker id 'twin' is in use" in dup.stderr and "pick another --id" in dup.stderr
    finally:
        stop(first)


@pytest.mark.parametrize(
    ("launcher", "args", "expected"),
    [
        ([], [], 10),  # the default: below the API's priority
        ([], ["--nice", "0"], 0),
        (["nice", "-n", "15"], [], 15),  # a higher value set by the service manager stands
    ],
)
def test_worker_runs_at_a_lower_cpu_priority_than_the_api(
    api_only: EmbeddedServer, tmp_path: Path, launcher: list[str], args: list[str], expected: int
) -> None:
    import psutil

    log = tmp_path / "w.log"
    proc = subprocess.Popen(
        [
            *launcher,
            sys.executable,
            "-m",
            "bridgehead",
            "worker",
            "--engine",
            "fake",
            "--id",
            f"nice-{expected}",
            *args,
        ],
        env=worker_env(api_only),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "bridgehead worker nice-" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert "bridgehead worker nice-" in log.read_text(), log.read_text()
        threads = psutil.Process(proc.pid).threads()
        assert {os.getpriority(os.PRIO_PROCESS, t.id) for t in threads} == {expected}
    finally:
        stop(proc)
    assert os.getpriority(os.PRIO_PROCESS, 0) == 0  # the test process itself is untouched


def test_worker_refuses_a_nice_value_out_of_range(api_only: EmbeddedServer) -> None:
    done = run_worker(api_only, ["--engine", "fake", "--nice", "25"])
    assert done.returncode == 2 and "--nice" in done.stderr
