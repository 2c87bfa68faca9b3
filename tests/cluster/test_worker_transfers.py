"""Volume imports and exports in the cluster shape: API servers with no dispatcher, `bridgehead worker`s
doing the background work. A worker runs transfers, and taking over a dead worker redoes the transfers
it was running, while one that a live worker runs is left alone."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from bridgehead.db.base import utcnow
from bridgehead.embedded import EmbeddedServer

from ..conftest import PG_ADMIN_URL
from .support import db_engine, start_api_only, start_worker, stop

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason="needs BRIDGEHEAD_TEST_POSTGRES_URL")
ROOT = Path(tempfile.mkdtemp(prefix="bh-worker-vol-"))
ENV = {"BRIDGEHEAD_VOLUME_ROOTS": str(ROOT)}


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> Iterator[EmbeddedServer]:
    srv = start_api_only(tmp_path_factory.mktemp("api"), tls_dir, **ENV)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def client(api_only: EmbeddedServer, ssl_context: Any) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_only.url, verify=ssl_context, headers={"X-SBG-Auth-Token": api_only.token}, timeout=60
    ) as c:
        yield c


def state_of(client: httpx.Client, tid: str) -> str:
    state: str = client.get(f"/storage/imports/{tid}").json()["state"]
    return state


def wait_state(client: httpx.Client, tid: str, states: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (state := state_of(client, tid)) not in states:
        assert time.monotonic() < deadline, f"import {tid} still {state}"
        time.sleep(0.2)
    return state


def imports(client: httpx.Client, name: str, count: int) -> list[str]:
    (ROOT / name).mkdir()
    (ROOT / name / "a.txt").write_bytes(b"payload")
    service = {"type": "local", "root": str(ROOT / name)}
    vid = client.post(
        "/storage/volumes", json={"name": name, "access_mode": "RW", "service": service}
    ).json()["id"]
    pid = client.post("/projects", json={"name": name}).json()["id"]
    body = {
        "source": {"volume": vid, "location": "a.txt"},
        "destination": {"project": pid},
        "autorename": True,
    }
    return [client.post("/storage/imports", json=body).json()["id"] for _ in range(count)]


def test_worker_runs_imports_for_api_only_servers(
    api_only: EmbeddedServer, client: httpx.Client, tmp_path: Path
) -> None:
    (tid,) = imports(client, "plain", 1)
    time.sleep(1.0)
    assert state_of(client, tid) == "PENDING"  # no process with a dispatcher runs yet
    worker = start_worker(api_only, ["--engine", "fake", "--id", "porter"], tmp_path / "w.log", **ENV)
    try:
        assert wait_state(client, tid, {"COMPLETED", "FAILED"}) == "COMPLETED"
    finally:
        stop(worker)
    assert client.get(f"/storage/imports/{tid}").json()["result"]["name"] == "a.txt"


def test_take_over_redoes_only_the_dead_workers_transfers(
    api_only: EmbeddedServer, client: httpx.Client, tmp_path: Path
) -> None:
    dead, alive = imports(client, "takeover", 2)
    engine = db_engine(api_only.resolved_database_url)
    with engine.begin() as conn:
        # "ghost" stopped beating long ago; "busy" is alive (its heartbeat is fresh for the whole test).
        for wid, beat in (("ghost", utcnow() - timedelta(hours=1)), ("busy", utcnow() + timedelta(hours=1))):
            conn.execute(
                text(
                    "INSERT INTO workers (id, hostname, pid, engine, started_at, heartbeat_at) "
                    "VALUES (:id, 'elsewhere', 1, 'fake', :t, :t)"
                ),
                {"id": wid, "t": beat},
            )
        for tid, owner in ((dead, "ghost"), (alive, "busy")):
            conn.execute(
                text("UPDATE transfers SET state = 'RUNNING', attempts = 1, claimed_by = :o WHERE id = :i"),
                {"o": owner, "i": tid},
            )
    worker = start_worker(
        api_only, ["--engine", "fake", "--id", "rescuer", "--dead-after", "4"], tmp_path / "w.log", **ENV
    )
    try:
        assert wait_state(client, dead, {"COMPLETED", "FAILED"}) == "COMPLETED"
        assert state_of(client, alive) == "RUNNING"
    finally:
        stop(worker)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM workers WHERE id = 'busy'"))
        engine.dispose()
