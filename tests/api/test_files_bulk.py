"""Wire-level checks of the bulk envelope, ``fields`` with the ``resource.`` prefix and async job errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.api.test_files_errors import _err, _ok, upload_bytes
from tests.support.dbstate import snapshot


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> dict[str, Any]:
    return _ok(http.post("/projects", json={"name": "bulk-wire"}), 201)  # type: ignore[no-any-return]


def test_bulk_get_fields_and_errors(http: httpx.Client, project: dict[str, Any]) -> None:
    f = upload_bytes(http, project, "b1.txt", b"1")
    body = _ok(
        http.post(
            "/bulk/files/get",
            params={"fields": "resource.id,resource.name"},
            json={"file_ids": [f["id"], "nope", 7]},
        )
    )
    assert body["items"][0] == {"resource": {"id": f["id"], "name": "b1.txt"}}
    assert body["items"][1]["error"]["status"] == 404 and body["items"][1]["error"]["code"] == 5002
    assert body["items"][2]["error"]["code"] == 5004
    _err(http.post("/bulk/files/get", json={"file_ids": ["x"] * 101}), 400, 90000, "100")
    _err(http.post("/bulk/files/get", json={"file_ids": "abc"}), 400, 90000, "file_ids")
    _err(http.post("/bulk/files/get", json={}), 400, 90000, "file_ids")


def test_bulk_update_is_per_item(http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]) -> None:
    f = upload_bytes(http, project, "b2.txt", b"2")
    g = upload_bytes(http, project, "b3.txt", b"3")
    items = [
        {"id": f["id"], "name": "b2-renamed.txt", "metadata": {"a": "1"}, "tags": ["t"]},
        {"id": g["id"], "name": "bad/name"},
    ]
    body = _ok(http.post("/bulk/files/update", json={"items": items}))
    assert body["items"][0]["resource"]["name"] == "b2-renamed.txt"
    assert body["items"][1]["error"]["code"] == 5024
    assert _ok(http.get(f"/files/{g['id']}"))["name"] == "b3.txt"
    # update replaces: omitted metadata and tags are cleared; edit merges.
    _ok(http.post("/bulk/files/update", json={"items": [{"id": f["id"], "name": "b2-renamed.txt"}]}))
    cleared = _ok(http.get(f"/files/{f['id']}"))
    assert cleared["metadata"] == {} and cleared["tags"] == []
    _ok(http.post("/bulk/files/edit", json={"items": [{"id": f["id"], "metadata": {"m": "1"}}]}))
    _ok(http.post("/bulk/files/edit", json={"items": [{"id": f["id"], "metadata": {"n": "2"}}]}))
    assert _ok(http.get(f"/files/{f['id']}"))["metadata"] == {"m": "1", "n": "2"}


def test_async_job_errors(http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]) -> None:
    before = snapshot(server.resolved_database_url)
    _err(http.post("/async/files/copy", json={"items": []}), 400, 90000, "items")
    _err(http.post("/async/files/explode", json={"items": [{"file": "x"}]}), 400, 90000, "type")
    _err(http.get("/async/files/copy/00000000-0000-0000-0000-000000000000"), 404, 90003)
    assert snapshot(server.resolved_database_url) == before
    f = upload_bytes(http, project, "b4.txt", b"4")
    job = _ok(
        http.post("/async/files/copy", json={"items": [{"file": f["id"], "project": project["id"]}]}), 201
    )
    assert job["result"][0]["error"]["code"] == 5003  # same name in the same folder
    assert job["href"].endswith(f"/async/files/copy/{job['id']}")
    _err(http.get(f"/async/files/move/{job['id']}"), 404, 90003)
    assert _ok(http.get(f"/async/files/copy/{job['id']}"))["failed_files"] == 1


def test_actions_validation(http: httpx.Client) -> None:
    _err(http.post("/action/files/copy", json={"project": "nobody/none", "file_ids": ["x"]}), 404, 3002)
    _err(http.post("/action/files/copy", json={"project": "a/b"}), 400, 90000, "file_ids")
    _err(http.post("/action/notifications/feedback", json={"type": "RANT", "text": "x"}), 400, 90000, "type")
    assert http.post("/action/notifications/feedback", json={"type": "idea", "text": "t"}).status_code == 204
