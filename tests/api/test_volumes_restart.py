"""A transfer interrupted by a crash is redone after restart, or failed with a reason once it has been
tried too often: nothing stays RUNNING forever. A transfer another live process runs is left alone."""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import DB_KINDS, start_server

ROOT = Path(tempfile.mkdtemp(prefix="bh-volroot-"))


def wait(client: httpx.Client, tid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = client.get(f"/storage/imports/{tid}").json()
        if body["state"] in ("COMPLETED", "FAILED"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


@pytest.mark.parametrize("db_kind", DB_KINDS)
def test_running_transfers_recover_after_crash(
    tmp_path: Path, tls_dir: Path, ssl_context: Any, db_kind: str
) -> None:
    (ROOT / db_kind).mkdir()
    (ROOT / db_kind / "a.txt").write_bytes(b"payload")
    srv = start_server(
        tmp_path,
        tls_dir,
        db_kind=db_kind,
        extra_env={"BRIDGEHEAD_VOLUME_ROOTS": str(ROOT)},
        extra_args=["--no-dispatcher"],
    )
    try:
        with httpx.Client(
            base_url=srv.url, verify=ssl_context, headers={"X-SBG-Auth-Token": srv.token}, timeout=60
        ) as client:
            service = {"type": "local", "root": str(ROOT / db_kind)}
            vid = client.post(
                "/storage/volumes", json={"name": "v", "access_mode": "RW", "service": service}
            ).json()["id"]
            pid = client.post("/projects", json={"name": "p"}).json()["id"]
            body = {"source": {"volume": vid, "location": "a.txt"}, "destination": {"project": pid}}
            retry = client.post("/storage/imports", json=body).json()["id"]
            give_up = client.post("/storage/imports", json={**body, "autorename": True}).json()["id"]
            # Run by another live process (another host's dispatcher): this restart must not touch it.
            foreign = client.post("/storage/imports", json={**body, "autorename": True}).json()["id"]
            # A second volume deleted while its import waits: the import must fail, naming it.
            (ROOT / db_kind / "gone").mkdir()
            service2 = {"type": "local", "root": str(ROOT / db_kind / "gone")}
            vid2 = client.post(
                "/storage/volumes", json={"name": "v2", "access_mode": "RW", "service": service2}
            ).json()["id"]
            orphan = client.post(
                "/storage/imports", json={**body, "source": {"volume": vid2, "location": "a.txt"}}
            ).json()["id"]
            assert client.delete(f"/storage/volumes/{vid2}").status_code == 204
            time.sleep(1.5)
            assert client.get(f"/storage/imports/{retry}").json()["state"] == "PENDING"  # no worker runs

            srv.kill()  # a crash while both were being copied
            engine = create_engine(srv.resolved_database_url, poolclass=NullPool)
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE transfers SET state = 'RUNNING', attempts = 1, claimed_by = :me WHERE id = :i"
                    ),
                    {"i": retry, "me": f"{socket.gethostname()}/fake"},  # this server's own dispatcher id
                )
                conn.execute(
                    text("UPDATE transfers SET state = 'RUNNING', attempts = 3 WHERE id = :i"), {"i": give_up}
                )
                conn.execute(
                    text(
                        "UPDATE transfers SET state = 'RUNNING', attempts = 1, claimed_by = 'elsewhere/fake' "
                        "WHERE id = :i"
                    ),
                    {"i": foreign},
                )
            engine.dispose()
            srv.extra_args = []
            srv.restart()

            done = wait(client, retry)
            assert done["state"] == "COMPLETED" and done["result"]["name"] == "a.txt"
            failed = wait(client, give_up)
            assert failed["state"] == "FAILED" and "restart" in failed["error"]["message"]
            assert failed["result"] is None
            assert client.get(f"/storage/imports/{foreign}").json()["state"] == "RUNNING"
            lost = wait(client, orphan)
            assert (
                lost["state"] == "FAILED"
                and lost["error"]["code"] == 9007
                and vid2 in lost["error"]["message"]
            )
    finally:
        srv.stop()
