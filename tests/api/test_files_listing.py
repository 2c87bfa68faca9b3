"""Listing totals: ``X-Total-Matching-Query`` of an unfiltered folder listing comes from the trigger-kept
``folder_counts``; every way files enter, move or leave a folder must keep it equal to a real COUNT."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.pool import NullPool

from bridgehead.db.base import new_file_id, utcnow
from bridgehead.db.models import File
from bridgehead.embedded import EmbeddedServer
from tests.api.test_files_errors import _ok, upload_bytes
from tests.support.dbstate import assert_same_pairs


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> dict[str, Any]:
    return _ok(http.post("/projects", json={"name": "listing totals"}), 201)  # type: ignore[no-any-return]


def _total(http: httpx.Client, **params: str) -> int:
    """The total of a one-item page (a full page: the server must look the total up, not infer it)."""
    resp = http.get("/files", params={**params, "limit": "1"})
    assert resp.status_code == 200, resp.text
    return int(resp.headers["X-Total-Matching-Query"])


def _counts_match_reality(server: EmbeddedServer) -> None:
    assert_same_pairs(
        server.resolved_database_url,
        "SELECT folder_id, children FROM folder_counts",
        "SELECT parent_id, COUNT(*) FROM files WHERE parent_id IS NOT NULL GROUP BY parent_id",
    )


def _insert_rows(server: EmbeddedServer, project_id: int, parent: str, count: int) -> None:
    """Rows written straight to the database (as an import tool would): the triggers count them too."""
    engine = create_engine(server.resolved_database_url, poolclass=NullPool)
    now = utcnow()
    rows = [
        {
            "id": new_file_id(),
            "project_id": project_id,
            "parent_id": parent,
            "name": f"direct_{i}.txt",
            "type": "FILE",
            "size": 0,
            "storage": {"type": "PLATFORM"},
            "metadata": {},
            "tags": [],
            "created_on": now,
            "modified_on": now,
        }
        for i in range(count)
    ]
    try:
        with engine.begin() as conn:
            conn.execute(insert(File), rows)
    finally:
        engine.dispose()


def test_folder_totals_follow_every_change(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]
) -> None:
    pid = project["id"]
    assert _total(http, project=pid) == 0
    a = _ok(http.post("/files", json={"project": pid, "name": "a", "type": "folder"}), 201)
    b = _ok(http.post("/files", json={"project": pid, "name": "b", "type": "folder"}), 201)
    f1 = upload_bytes(http, project, "one.txt", b"1")
    upload_bytes(http, project, "two.txt", b"22")
    assert _total(http, project=pid) == 4

    engine = create_engine(server.resolved_database_url, poolclass=NullPool)
    with engine.connect() as conn:
        internal_id = conn.execute(
            text("SELECT project_id FROM files WHERE id = :i"), {"i": a["id"]}
        ).scalar()
    engine.dispose()
    assert isinstance(internal_id, int)
    _insert_rows(server, internal_id, a["id"], 7)
    assert _total(http, parent=a["id"]) == 7

    _ok(http.post(f"/files/{f1['id']}/actions/move", json={"parent": a["id"]}))
    assert (_total(http, project=pid), _total(http, parent=a["id"])) == (3, 8)
    _ok(http.post(f"/files/{f1['id']}/actions/copy", json={"parent": b["id"], "name": "copy.txt"}))
    assert _total(http, parent=b["id"]) == 1
    assert http.delete(f"/files/{f1['id']}").status_code == 204
    assert _total(http, parent=a["id"]) == 7
    # A filtered listing still counts its matches, not the folder.
    filtered = http.get("/files", params={"parent": a["id"], "limit": "1", "name": "direct_3.txt"})
    assert filtered.headers["X-Total-Matching-Query"] == "1"
    _counts_match_reality(server)


def test_deleting_a_project_leaves_no_counts(http: httpx.Client, server: EmbeddedServer) -> None:
    doomed = _ok(http.post("/projects", json={"name": "doomed listing"}), 201)
    folder = _ok(http.post("/files", json={"project": doomed["id"], "name": "sub", "type": "folder"}), 201)
    upload_bytes(http, doomed, "inner.txt", b"x")
    _ok(http.post("/files", json={"parent": folder["id"], "name": "deeper", "type": "folder"}), 201)
    assert http.delete(f"/projects/{doomed['id']}").status_code == 204
    _counts_match_reality(server)


def test_listing_items_equal_the_file_objects(http: httpx.Client, project: dict[str, Any]) -> None:
    """The listing builds items from rows, not ORM objects: each must equal ``GET /files/{id}`` exactly."""
    f = upload_bytes(http, project, "described.txt", b"data")
    patch = {"metadata": {"sample": "Ünïcode ✓", "n": "1"}, "tags": ["t1", "t2"]}
    _ok(http.patch(f"/files/{f['id']}", json=patch))
    _ok(http.post("/files", json={"project": project["id"], "name": "zfolder", "type": "folder"}), 201)
    listed = http.get("/files", params={"project": project["id"], "limit": "100"})
    items = _ok(listed)["items"]
    assert {i["name"] for i in items} >= {"described.txt", "zfolder"}
    for item in items:
        single = http.get(f"/files/{item['id']}")
        assert single.json() == item
        raw_item = listed.content.split(f'"id":"{item["id"]}"'.encode())[1].split(b"}", 1)[0]
        assert raw_item in single.content  # same bytes, not merely equal JSON


def test_opposite_moves_at_once(http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]) -> None:
    """Two clients moving files in opposite directions between the same two folders at the same time:
    every move succeeds (on PostgreSQL the count rows are taken in one order, so neither move can
    deadlock the other) and the totals stay true."""
    folders = [
        _ok(http.post("/files", json={"name": f"swap-{n}", "type": "folder", "project": project["id"]}), 201)
        for n in ("x", "y")
    ]
    ids = [f["id"] for f in folders]
    files = [upload_bytes(http, project, f"swap-{n}.txt", b"s") for n in range(2)]
    for f, folder in zip(files, ids, strict=True):
        _ok(http.post(f"/files/{f['id']}/actions/move", json={"parent": folder}))

    def shuttle(file_id: str, start: int) -> list[int]:
        statuses = []
        with httpx.Client(
            base_url=str(http.base_url), headers=http.headers, verify=http._transport._pool._ssl_context
        ) as own:  # type: ignore[attr-defined]
            for step in range(40):
                to = ids[(start + step + 1) % 2]
                statuses.append(own.post(f"/files/{file_id}/actions/move", json={"parent": to}).status_code)
        return statuses

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(shuttle, [f["id"] for f in files], [0, 1]))
    assert all(code == 200 for codes in results for code in codes), results
    assert _total(http, parent=ids[0]) == _total(http, parent=ids[1]) == 1
    _counts_match_reality(server)
