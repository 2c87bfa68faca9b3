"""Wire-level checks of files, uploads and downloads: bad input gets a clear SBG error and changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.dbstate import snapshot

MiB = 1024 * 1024
JSON = {"Content-Type": "application/json"}


def _ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json() if resp.content else None


def _err(resp: httpx.Response, status: int, code: int, mentions: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["more_info"].startswith("https://")
    if mentions:
        assert mentions in body["message"], body["message"]
    return body


def _blobs(server: EmbeddedServer) -> set[Path]:
    root = server.data_path / "blobs"
    return {p for p in root.rglob("*") if p.is_file()}


def _parts(server: EmbeddedServer) -> set[Path]:
    return {p for p in (server.data_path / "uploads").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> dict[str, Any]:
    return _ok(http.post("/projects", json={"name": "errors"}), 201)  # type: ignore[no-any-return]


def _init(http: httpx.Client, project: dict[str, Any], name: str, size: int, **kw: Any) -> dict[str, Any]:
    body = {"project": project["id"], "name": name, "size": size, **kw}
    return _ok(http.post("/upload/multipart", json=body))  # type: ignore[no-any-return]


def _put(http: httpx.Client, upload_id: str, n: int, data: bytes) -> httpx.Response:
    url = _ok(http.get(f"/upload/multipart/{upload_id}/part/{n}"))["url"]
    with httpx.Client(verify=http._transport._pool._ssl_context) as anon:  # type: ignore[attr-defined]
        return anon.put(url, content=data)


def upload_bytes(http: httpx.Client, project: dict[str, Any], name: str, data: bytes) -> dict[str, Any]:
    up = _init(http, project, name, len(data))
    ps = up["part_size"]
    for i in range(max(1, -(-len(data) // ps))):
        resp = _put(http, up["upload_id"], i + 1, data[i * ps : (i + 1) * ps])
        assert resp.status_code == 200 and resp.headers["ETag"].strip('"')
    return _ok(http.post(f"/upload/multipart/{up['upload_id']}/complete", content=b"null", headers=JSON))  # type: ignore[no-any-return]


def test_file_json_shape(http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]) -> None:
    f = upload_bytes(http, project, "shape.txt", b"hello")
    assert set(f) >= {
        "href",
        "id",
        "name",
        "size",
        "project",
        "parent",
        "type",
        "created_on",
        "modified_on",
        "origin",
        "storage",
        "metadata",
        "tags",
    }
    assert len(f["id"]) == 24 and int(f["id"], 16) >= 0
    assert f["href"] == f"{server.url}/files/{f['id']}"
    assert (
        f["type"] == "file" and f["size"] == 5 and f["origin"] == {} and f["storage"] == {"type": "PLATFORM"}
    )
    assert f["created_on"].endswith("Z") and f["parent"] == project["root_folder"]
    listed = http.get("/files", params={"project": project["id"], "name": "shape.txt", "fields": "id,name"})
    assert _ok(listed)["items"] == [{"id": f["id"], "name": "shape.txt"}]
    assert listed.headers["X-Total-Matching-Query"] == "1"


def test_upload_part_errors_store_nothing(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]
) -> None:
    up = _init(http, project, "parts.bin", 6 * MiB, part_size=5 * MiB)
    assert up["part_size"] == 5 * MiB
    uid = up["upload_id"]
    _err(http.get(f"/upload/multipart/{uid}/part/3"), 400, 8012, "out of range")
    _err(http.get(f"/upload/multipart/{uid}/part/0"), 400, 8012)
    # Part 1 must be exactly part_size; part 2 the remainder.
    _err(_put(http, uid, 1, b"x" * 100), 400, 8014, "must be")
    _err(_put(http, uid, 2, b"x" * 100), 400, 8014, "must be")
    assert _parts(server) == set()
    # Completing with parts missing names them.
    _err(http.post(f"/upload/multipart/{uid}/complete", content=b"null", headers=JSON), 400, 8007, "1, 2")
    assert _ok(_put(http, uid, 2, b"y" * (6 * MiB - up["part_size"])), 200) is None
    _err(http.post(f"/upload/multipart/{uid}/complete", content=b"null", headers=JSON), 400, 8007, ": 1.")
    # A chunked body (no Content-Length) that ends short un-records the part it overwrote.
    url = _ok(http.get(f"/upload/multipart/{uid}/part/2"))["url"]
    with httpx.Client(verify=http._transport._pool._ssl_context) as anon:  # type: ignore[attr-defined]
        _err(anon.put(url, content=iter([b"short"])), 400, 8014, "got 5")
    _err(http.post(f"/upload/multipart/{uid}/complete", content=b"null", headers=JSON), 400, 8007, "1, 2")
    assert _ok(_put(http, uid, 2, b"y" * (6 * MiB - up["part_size"])), 200) is None
    info = _ok(http.get(f"/upload/multipart/{uid}", params={"list_parts": "true"}))
    assert info["uploaded_parts_count"] == 1 and [p["part_number"] for p in info["parts"]] == [2]
    # A report with a wrong ETag is refused; the right one is accepted.
    _err(
        http.post(
            f"/upload/multipart/{uid}/part/",
            json={"part_number": 2, "response": {"headers": {"ETag": '"deadbeef"'}}},
        ),
        400,
        8014,
        "ETag",
    )
    assert any(u["upload_id"] == uid for u in _ok(http.get("/upload/multipart"))["items"])
    # Abort removes the rows and the part files.
    assert http.delete(f"/upload/multipart/{uid}").status_code == 204
    assert _parts(server) == set()
    _err(http.get(f"/upload/multipart/{uid}"), 404, 8003)


def _blob_of(server: EmbeddedServer, data: bytes, part_size: int = 5 * MiB) -> Path:
    """Where the blob of ``data`` uploaded in parts of ``part_size`` lives: the documented key is the
    content's SHA-256 for one part, else the SHA-256 of the part digests, suffixed with their count."""
    digests = [hashlib.sha256(data[i : i + part_size]).digest() for i in range(0, len(data), part_size)]
    if len(digests) == 1:
        key = digests[0].hex()
    else:
        tree = hashlib.sha256(f"bridgehead-multipart {len(data)} {part_size}\n".encode())
        for digest in digests:
            tree.update(digest)
        key = f"{tree.hexdigest()}-{len(digests)}"
    return server.data_path / "blobs" / key[:2] / key


def test_resumed_upload_with_resent_part(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]
) -> None:
    data = bytes(range(256)) * (24 * 1024)  # 6 MiB: two parts
    up = _init(http, project, "resume.bin", len(data), part_size=5 * MiB)
    uid, ps = up["upload_id"], up["part_size"]
    _put(http, uid, 2, b"z" * (len(data) - ps))  # wrong content, right size
    _put(http, uid, 1, data[:ps])
    info = _ok(http.get(f"/upload/multipart/{uid}", params={"list_parts": "true"}))
    assert info["uploaded_parts_count"] == 2
    resent = _put(http, uid, 2, data[ps:])  # re-PUT replaces the part
    assert resent.headers["ETag"].strip('"') == hashlib.sha256(data[ps:]).hexdigest()
    parts = [
        {"part_number": n, "response": {"headers": {"ETag": e}}}
        for n, e in [(1, hashlib.sha256(data[:ps]).hexdigest()), (2, resent.headers["ETag"])]
    ]
    done = _ok(http.post(f"/upload/multipart/{uid}/complete", json={"parts": parts}))
    assert done["size"] == len(data)
    # The blob key (from the digests of the parts as they arrived) is that of the final bytes.
    assert _blob_of(server, data).is_file()
    url = _ok(http.get(f"/files/{done['id']}/download_info"))["url"]
    with httpx.Client(verify=http._transport._pool._ssl_context) as anon:  # type: ignore[attr-defined]
        assert anon.get(url).content == data


def test_upload_digest_follows_parts_in_any_order(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]
) -> None:
    """A part overwritten by a later PUT must not leave a stale digest in the blob key."""
    ps = 5 * MiB
    data = b"".join(bytes([n]) * ps for n in (1, 2)) + b"tail" * 1000
    up = _init(http, project, "ordered.bin", len(data), part_size=ps)
    uid = up["upload_id"]
    for n, chunk in [(3, data[2 * ps :]), (1, b"w" * ps), (2, data[ps : 2 * ps])]:
        assert _put(http, uid, n, chunk).status_code == 200
    assert _put(http, uid, 1, data[:ps]).status_code == 200
    done = _ok(http.post(f"/upload/multipart/{uid}/complete", content=b"null", headers=JSON))
    assert done["size"] == len(data) and _blob_of(server, data).is_file()
    assert not _blob_of(server, b"w" * ps + data[ps:]).exists()


def test_one_writer_per_part(http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]) -> None:
    """A second PUT of a part still being written is refused (409), so the bytes on disk are always
    those the recorded digest describes; once the first PUT ends, the part can be sent again."""
    ps = 5 * MiB
    data = b"a" * ps + b"b" * 1000
    up = _init(http, project, "one-writer.bin", len(data), part_size=ps)
    uid = up["upload_id"]
    url = _ok(http.get(f"/upload/multipart/{uid}/part/1"))["url"]
    release, first = threading.Event(), {}

    def slow_body() -> Iterator[bytes]:
        yield b"z" * MiB
        release.wait(30)
        yield b"z" * (ps - MiB)

    def slow_put() -> None:
        with httpx.Client(verify=http._transport._pool._ssl_context, timeout=60) as anon:  # type: ignore[attr-defined]
            first["response"] = anon.put(url, content=slow_body(), headers={"Content-Length": str(ps)})

    writer = threading.Thread(target=slow_put)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            clash = _put(http, uid, 1, data[:ps])
            if clash.status_code == 409:
                break
            time.sleep(0.05)  # the slow PUT has not taken the part yet
        _err(clash, 409, 8014, "another request")
    finally:
        release.set()
        writer.join()
    assert first["response"].status_code == 200
    assert _put(http, uid, 1, data[:ps]).status_code == 200
    assert _put(http, uid, 2, data[ps:]).status_code == 200
    done = _ok(http.post(f"/upload/multipart/{uid}/complete", content=b"null", headers=JSON))
    assert _blob_of(server, data).read_bytes() == data
    url = _ok(http.get(f"/files/{done['id']}/download_info"))["url"]
    with httpx.Client(verify=http._transport._pool._ssl_context) as anon:  # type: ignore[attr-defined]
        assert anon.get(url).content == data


def test_download_ranges_and_signatures(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]
) -> None:
    data = b"0123456789" * 100
    f = upload_bytes(http, project, "ranges.txt", data)
    url = _ok(http.get(f"/files/{f['id']}/download_info"))["url"]
    with httpx.Client(verify=http._transport._pool._ssl_context) as anon:  # type: ignore[attr-defined]
        whole = anon.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["Content-Length"] == "1000" and "chunked" not in whole.headers.get(
            "transfer-encoding", ""
        )
        part = anon.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["Content-Range"] == "bytes 10-19/1000" and part.headers["Content-Length"] == "10"
        tail = anon.get(url, headers={"Range": "bytes=990-5000"})  # past EOF: clamped
        assert tail.status_code == 206 and tail.content == data[990:]
        assert anon.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
        assert anon.get(url, headers={"Range": "bytes=1000-"}).status_code == 416

        forged = url.replace("signature=", "signature=0")
        _err(anon.get(forged), 403, 90002, "signature")
        other = url.replace(f["id"], "0" * 24)
        _err(anon.get(other), 403, 90002)
        assert (server.data_path / "secret.key").stat().st_mode & 0o777 == 0o600
        key = (server.data_path / "secret.key").read_bytes()
        past = int(time.time()) - 10
        sig = hmac.new(key, f"download\n{f['id']}\n{past}".encode(), hashlib.sha256).hexdigest()
        base = url.split("?")[0]
        _err(anon.get(f"{base}?expires={past}&signature={sig}"), 403, 90002, "expired")
        _err(anon.get(base), 403, 90002)


def test_names_ids_and_types(http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]) -> None:
    f = upload_bytes(http, project, "victim.txt", b"v")
    before, blobs = snapshot(server.resolved_database_url), _blobs(server)
    pid = project["id"]
    _err(http.post("/upload/multipart", json={"project": pid, "name": "a/b", "size": 1}), 400, 5024, "'/'")
    _err(
        http.post("/upload/multipart", json={"project": pid, "name": "é" * 128, "size": 1}), 400, 5024, "255"
    )
    _err(http.post("/upload/multipart", json={"project": pid, "name": "x", "size": "big"}), 400, 8013, "size")
    _err(http.post("/upload/multipart", json={"project": pid, "name": "x"}), 400, 8013, "size")
    _err(http.post("/upload/multipart", json={"name": "x", "size": 1}), 400, 5029, "project")
    _err(
        http.post("/upload/multipart", json={"project": pid, "parent": f["parent"], "name": "x", "size": 1}),
        400,
        5031,
    )
    _err(http.post("/upload/multipart", json={"parent": f["id"], "name": "x", "size": 1}), 400, 5022)
    _err(http.post("/upload/multipart", json={"project": pid, "name": "victim.txt", "size": 1}), 409, 5003)
    _err(http.patch(f"/files/{f['id']}", json={"name": "a/b"}), 400, 5024)
    _err(http.patch(f"/files/{f['id']}", json={"name": 5}), 400, 5024)
    _err(http.get("/files/" + "f" * 24), 404, 5002)
    _err(http.get("/files/not-an-id"), 404, 5002)
    _err(http.get("/files"), 400, 5029)
    _err(http.get("/files", params={"project": pid, "parent": f["parent"]}), 400, 5031)
    _err(http.get("/files", params={"project": "nobody/none"}), 404, 3002)
    _err(http.get("/files", params={"project": "malformed"}), 400, 3012)
    _err(http.put(f"/files/{f['id']}/metadata", json={"k": {"nested": 1}}), 400, 5006, "string")
    _err(http.put(f"/files/{f['id']}/metadata", json=["not", "a", "map"]), 400, 5006)
    _err(http.put(f"/files/{f['id']}/metadata", json={"k": "v" * 301}), 400, 5006, "300")
    _err(http.put(f"/files/{f['id']}/metadata", json={"k" * 101: "v"}), 400, 5006, "100")
    _err(http.put(f"/files/{f['id']}/metadata", json={str(i): "v" for i in range(1001)}), 400, 5006, "1000")
    _err(http.put(f"/files/{f['id']}/tags", json="tag"), 400, 90000, "tags")
    _err(http.post("/files", json={"name": "d", "type": "file", "project": pid}), 400, 5012, "folder")
    _err(http.post(f"/files/{f['parent']}/actions/copy", json={"project": pid}), 400, 5018)
    _err(http.post(f"/files/{f['id']}/actions/move", json={"parent": "0" * 24}), 404, 5026)
    _err(http.delete(f"/files/{f['parent']}"), 400, 5033, "root")
    _err(http.get(f"/files/{f['parent']}/download_info"), 400, 5017)
    assert snapshot(server.resolved_database_url) == before
    assert _blobs(server) == blobs


def test_folder_rules(http: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["id"]
    made = _ok(http.post("/files", json={"name": "Dir", "type": "FOLDER", "project": pid}), 201)
    assert made["type"] == "folder" and made["size"] == 0
    _err(http.post("/files", json={"name": "Dir", "type": "folder", "project": pid}), 409, 5030)
    inner = _ok(http.post("/files", json={"name": "inner", "type": "folder", "parent": made["id"]}), 201)
    _err(http.post(f"/files/{made['id']}/actions/move", json={"parent": inner["id"]}), 400, 5033, "itself")
    _err(http.delete(f"/files/{made['id']}"), 400, 5021, "not empty")
    assert _ok(http.get(f"/files/{made['id']}/list"))["items"][0]["id"] == inner["id"]
    f = upload_bytes(http, project, "plain.txt", b"p")
    _err(http.get(f"/files/{f['id']}/list"), 400, 5022)


def test_metadata_endpoints(http: httpx.Client, project: dict[str, Any]) -> None:
    f = upload_bytes(http, project, "meta.txt", b"m")
    assert _ok(http.put(f"/files/{f['id']}/metadata", json={"a": "1", "b": "2"})) == {"a": "1", "b": "2"}
    assert _ok(http.patch(f"/files/{f['id']}/metadata", json={"a": None, "c": "3"})) == {"b": "2", "c": "3"}
    assert _ok(http.get(f"/files/{f['id']}/metadata")) == {"b": "2", "c": "3"}
    assert _ok(http.put(f"/files/{f['id']}/tags", json=["x", "y"])) == ["x", "y"]
    hits = _ok(http.get("/files", params={"project": project["id"], "metadata.c": "3"}))["items"]
    assert [h["id"] for h in hits] == [f["id"]]
    assert _ok(http.get("/files", params={"project": project["id"], "metadata.a": "1"}))["items"] == []


def test_permissions(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any], ssl_context: Any
) -> None:
    f = upload_bytes(http, project, "private.txt", b"secret")
    token = server.create_user("outsider")
    with httpx.Client(base_url=server.url, verify=ssl_context, headers={"X-SBG-Auth-Token": token}) as other:
        _err(other.get(f"/files/{f['id']}"), 403, 3001)
        _err(other.get("/files", params={"project": project["id"]}), 403, 3001)
        _err(other.get(f"/files/{f['id']}/download_info"), 403, 3001)
        _err(
            other.post("/upload/multipart", json={"project": project["id"], "name": "n", "size": 1}),
            403,
            3001,
        )
        # A read-only member may look but not change or download.
        _ok(
            http.post(
                f"/projects/{project['id']}/members",
                json={"username": "outsider", "permissions": {"read": True}},
            ),
            201,
        )
        assert _ok(other.get(f"/files/{f['id']}"))["id"] == f["id"]
        _err(other.get(f"/files/{f['id']}/download_info"), 403, 3001, "copy")
        _err(other.patch(f"/files/{f['id']}", json={"name": "mine.txt"}), 403, 3001, "write")
        _err(other.delete(f"/files/{f['id']}"), 403, 3001)
        # Someone else's upload is invisible.
        up = _init(http, project, "theirs.bin", 1)
        _err(other.get(f"/upload/multipart/{up['upload_id']}"), 404, 8003)
        _err(other.delete(f"/upload/multipart/{up['upload_id']}"), 404, 8003)
        http.delete(f"/upload/multipart/{up['upload_id']}")


def test_delete_keeps_shared_blob_until_last_copy(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]
) -> None:
    f = upload_bytes(http, project, "shared.txt", b"shared content 42")
    copy = _ok(http.post(f"/files/{f['id']}/actions/copy", json={"project": project["id"], "name": "c.txt"}))
    count = len(_blobs(server))
    assert http.delete(f"/files/{f['id']}").status_code == 204
    assert len(_blobs(server)) == count
    assert http.delete(f"/files/{copy['id']}").status_code == 204
    assert len(_blobs(server)) == count - 1


def test_move_folder_across_projects_and_metadata_index(http: httpx.Client, project: dict[str, Any]) -> None:
    other = _ok(http.post("/projects", json={"name": "errors-dest"}), 201)
    box = _ok(http.post("/files", json={"name": "tree", "type": "folder", "project": project["id"]}), 201)
    sub = _ok(http.post("/files", json={"name": "sub", "type": "folder", "parent": box["id"]}), 201)
    body = {"parent": sub["id"], "name": "leaf.txt", "size": 4}
    up = _ok(http.post("/upload/multipart", json=body))
    _put(http, up["upload_id"], 1, b"leaf")
    leaf = _ok(http.post(f"/upload/multipart/{up['upload_id']}/complete", content=b"null", headers=JSON))
    _ok(http.put(f"/files/{leaf['id']}/metadata", json={"tissue": "liver"}))
    copy = _ok(http.post(f"/files/{leaf['id']}/actions/copy", json={"parent": box["id"]}))
    hits = _ok(http.get("/files", params={"parent": box["id"], "metadata.tissue": "liver"}))["items"]
    assert [h["id"] for h in hits] == [copy["id"]]  # the copy carries (and indexes) the metadata

    moved = _ok(http.post(f"/files/{box['id']}/actions/move", json={"parent": other["root_folder"]}))
    assert moved["id"] == box["id"] and moved["project"] == other["id"]
    assert _ok(http.get(f"/files/{leaf['id']}"))["project"] == other["id"]
    assert _ok(http.get(f"/files/{sub['id']}"))["project"] == other["id"]
    names = [f["name"] for f in _ok(http.get("/files", params={"project": other["id"]}))["items"]]
    assert names == ["tree"]


def test_abandoned_uploads_are_reclaimed(
    http: httpx.Client, server: EmbeddedServer, project: dict[str, Any]
) -> None:
    from sqlalchemy import create_engine, text

    old = _init(http, project, "abandoned.bin", 3)
    _put(http, old["upload_id"], 1, b"abc")
    assert (server.data_path / "uploads" / old["upload_id"]).is_dir()
    engine = create_engine(server.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE uploads SET initiated = :t WHERE id = :i"),
            {"t": datetime(2020, 1, 1), "i": old["upload_id"]},
        )
    engine.dispose()
    fresh = _init(http, project, "fresh.bin", 1)
    _err(http.get(f"/upload/multipart/{old['upload_id']}"), 404, 8003)
    assert not (server.data_path / "uploads" / old["upload_id"]).exists()
    assert http.delete(f"/upload/multipart/{fresh['upload_id']}").status_code == 204
