"""Wire-level checks of volumes, imports and exports: bad input, permissions, and what is left behind.

Every rejected request must answer an SBG-shaped error naming the field and change no database row;
a failed transfer must leave no project file, no orphan blob and no partial object.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.dbstate import snapshot
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Endpoint, endpoint, moto_fixture

S3 = endpoint()
ROOT = Path(tempfile.mkdtemp(prefix="bh-volroot-"))
OUTSIDE = Path(tempfile.mkdtemp(prefix="bh-outside-"))
SERVER_ENV = {"BRIDGEHEAD_VOLUME_ROOTS": str(ROOT), "AWS_ENDPOINT_URL": S3.url}

s3 = moto_fixture(S3)


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def other(server: EmbeddedServer, ssl_context: Any) -> Iterator[httpx.Client]:
    """A second, non-admin user."""
    token = server.create_user(f"bob{uid()}")
    with httpx.Client(
        base_url=server.url, verify=ssl_context, headers={"X-SBG-Auth-Token": token}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> dict[str, Any]:
    resp = http.post("/projects", json={"name": f"vol-errors-{uid()}"})
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


@pytest.fixture(scope="module")
def local_volume(http: httpx.Client) -> dict[str, Any]:
    root = ROOT / f"vol{uid()}"
    (root / "in").mkdir(parents=True)
    for i in range(5):
        (root / "in" / f"f{i}.txt").write_bytes(f"file {i}".encode())
    (root / "in" / "deeper").mkdir()
    resp = http.post(
        "/storage/volumes",
        json={"name": f"lv_{uid()}", "access_mode": "RW", "service": {"type": "local", "root": str(root)}},
    )
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    data["_root"] = root
    return data


def expect_error(resp: httpx.Response, status: int, code: int | None, *words: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"status", "code", "message", "more_info"}
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body
    return body


def wait(http: httpx.Client, kind: str, tid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = http.get(f"/storage/{kind}/{tid}").json()
        if body["state"] in ("COMPLETED", "FAILED"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def blob_count(server: EmbeddedServer) -> int:
    blobs = server.data_path / "blobs"
    return sum(1 for p in blobs.rglob("*") if p.is_file() and p.parent.name != "tmp")


def test_local_root_outside_allow_list(http: httpx.Client, server: EmbeddedServer) -> None:
    before = snapshot(server.resolved_database_url)
    link = ROOT / f"escape{uid()}"
    os.symlink(OUTSIDE, link)
    for root in (str(OUTSIDE), str(ROOT / ".." / OUTSIDE.name), str(link), "relative/dir"):
        resp = http.post(
            "/storage/volumes",
            json={"name": f"bad_{uid()}", "access_mode": "RW", "service": {"type": "local", "root": root}},
        )
        expect_error(resp, 400, 9017, "service.root")
    missing = ROOT / "does-not-exist"
    resp = http.post(
        "/storage/volumes",
        json={
            "name": f"bad_{uid()}",
            "access_mode": "RW",
            "service": {"type": "local", "root": str(missing)},
        },
    )
    expect_error(resp, 400, 9100, "does not exist")
    assert snapshot(server.resolved_database_url) == before


def test_bad_volume_bodies(http: httpx.Client, server: EmbeddedServer, s3: S3Endpoint) -> None:
    before = snapshot(server.resolved_database_url)
    local = {"type": "local", "root": str(ROOT)}
    cases: list[tuple[dict[str, Any], int, int, str]] = [
        ({"name": "has-dash", "access_mode": "RW", "service": local}, 400, 9014, "name"),
        ({"name": "x" * 33, "access_mode": "RW", "service": local}, 400, 9014, "name"),
        ({"name": "", "access_mode": "RW", "service": local}, 400, 9013, "name"),
        ({"name": "ok_name", "access_mode": "RX", "service": local}, 400, 9015, "access_mode"),
        ({"name": "ok_name", "access_mode": "RW"}, 400, 9016, "service"),
        ({"name": "ok_name", "access_mode": "RW", "service": {"type": "gcs"}}, 400, 9017, "service.type"),
        ({"name": "ok_name", "access_mode": "RW", "service": {"type": "s3"}}, 400, 9017, "service.bucket"),
        (
            {
                "name": "ok_name",
                "access_mode": "RW",
                "service": {
                    "type": "s3",
                    "bucket": f"missing-{uid()}",
                    "credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
                },
            },
            400,
            9100,
            "not reachable",
        ),
    ]
    for body, status, code, word in cases:
        expect_error(http.post("/storage/volumes", json=body), status, code, word)
    assert snapshot(server.resolved_database_url) == before


def test_duplicate_name_and_unknown_ids(http: httpx.Client, local_volume: dict[str, Any]) -> None:
    body = {
        "name": local_volume["name"],
        "access_mode": "RW",
        "service": {"type": "local", "root": str(ROOT)},
    }
    expect_error(http.post("/storage/volumes", json=body), 409, 9010, local_volume["name"])
    expect_error(http.get("/storage/volumes/tester/nope"), 404, 9007, "tester/nope")
    expect_error(http.get("/storage/imports/0123456789abcdef"), 404, 9008)
    expect_error(http.get("/storage/exports/0123456789abcdef"), 404, 9008)
    vid = local_volume["id"]
    expect_error(
        http.get(f"/storage/volumes/{vid}/object", params={"location": "in/none.txt"}), 404, 9104, "none"
    )
    expect_error(http.get(f"/storage/volumes/{vid}/object"), 400, 9011, "location")
    expect_error(http.get(f"/storage/volumes/{vid}/list", params={"prefix": "../"}), 400, None, "prefix")
    expect_error(http.get(f"/storage/volumes/{vid}/list", params={"limit": "zero"}), 400, None, "limit")


def test_credentials_are_write_only(http: httpx.Client, s3: S3Endpoint) -> None:
    bucket = f"bh-{uid()}"
    s3.client().create_bucket(Bucket=bucket)
    service = {
        "type": "s3",
        "bucket": bucket,
        "credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
    }
    resp = http.post("/storage/volumes", json={"name": f"s_{uid()}", "access_mode": "RO", "service": service})
    assert resp.status_code == 201, resp.text
    assert SECRET_KEY not in resp.text and ACCESS_KEY not in resp.text
    vid = resp.json()["id"]
    listed = http.get("/storage/volumes", params={"limit": 100})
    assert SECRET_KEY not in listed.text and vid in [v["id"] for v in listed.json()["items"]]
    assert int(listed.headers["X-Total-Matching-Query"]) >= 1
    # A PATCH of the prefix keeps the stored credentials (they are not re-sent).
    patched = http.patch(f"/storage/volumes/{vid}", json={"service": {"prefix": "p"}, "description": "d"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["service"]["prefix"] == "p" and patched.json()["description"] == "d"
    assert http.get(f"/storage/volumes/{vid}/list").status_code == 200
    assert http.get(f"/storage/volumes/{vid}", params={"fields": "id,access_mode"}).json() == {
        "id": vid,
        "access_mode": "RO",
    }


def test_patch_rules(
    http: httpx.Client, server: EmbeddedServer, local_volume: dict[str, Any], project: dict[str, Any]
) -> None:
    vid = local_volume["id"]
    before = snapshot(server.resolved_database_url)
    cases: list[tuple[dict[str, Any], int, int | None, str]] = [
        ({"service": {"root": str(OUTSIDE)}}, 400, 9017, "service.root"),
        ({"service": {"type": "s3", "bucket": "b"}}, 400, 9017, "service.type"),
        ({"service": "nope"}, 400, 9017, "service"),
        ({"access_mode": "XX"}, 400, 9015, "access_mode"),
        ({"active": "sometimes"}, 400, None, "active"),
    ]
    for body, status, code, word in cases:
        expect_error(http.patch(f"/storage/volumes/{vid}", json=body), status, code, word)
    expect_error(http.patch("/storage/volumes/tester/none", json={"description": "x"}), 404, 9007)
    assert snapshot(server.resolved_database_url) == before
    # An inactive volume takes no new imports.
    assert http.patch(f"/storage/volumes/{vid}", json={"active": False}).json()["active"] is False
    body = {"source": {"volume": vid, "location": "in/f0.txt"}, "destination": {"project": project["id"]}}
    expect_error(http.post("/storage/imports", json=body), 400, 9103, "not active")
    assert http.patch(f"/storage/volumes/{vid}", json={"active": True}).json()["active"] is True
    ok = http.patch(f"/storage/volumes/{vid}", json={"access_mode": "ro"})
    assert ok.status_code == 200 and ok.json()["access_mode"] == "RO"
    assert http.patch(f"/storage/volumes/{vid}", json={"access_mode": "RW"}).json()["access_mode"] == "RW"


def test_listing_pages_with_continuation_token(http: httpx.Client, local_volume: dict[str, Any]) -> None:
    vid = local_volume["id"]
    seen: list[str] = []
    prefixes: list[str] = []
    url: str | None = f"/storage/volumes/{vid}/list?prefix=in/&limit=2"
    pages = 0
    while url:
        resp = http.get(url)
        assert resp.status_code == 200, resp.text
        assert "X-Total-Matching-Query" not in resp.headers
        body = resp.json()
        assert len(body["items"]) + len(body["prefixes"]) <= 2
        seen += [i["location"] for i in body["items"]]
        prefixes += [p["prefix"] for p in body["prefixes"]]
        for item in body["items"]:
            assert item["volume"] == vid and item["type"] == "local" and item["href"].startswith("https://")
        nxt = [link["next"] for link in body["links"]]
        url = nxt[0] if nxt else None
        pages += 1
    assert pages == 3
    assert seen == [f"in/f{i}.txt" for i in range(5)] and prefixes == ["in/deeper/"]
    bad = http.get(f"/storage/volumes/{vid}/list", params={"continuation_token": "!!"})
    expect_error(bad, 400, 9103, "continuation_token")


def test_import_of_missing_object_fails_and_leaves_nothing(
    http: httpx.Client, server: EmbeddedServer, s3: S3Endpoint, project: dict[str, Any]
) -> None:
    bucket = f"bh-{uid()}"
    s3.client().create_bucket(Bucket=bucket)
    service = {
        "type": "s3",
        "bucket": bucket,
        "credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
    }
    vid = http.post(
        "/storage/volumes", json={"name": f"m_{uid()}", "access_mode": "RW", "service": service}
    ).json()["id"]
    files_before = http.get("/files", params={"project": project["id"]}).json()["items"]
    blobs_before = blob_count(server)
    for location in ("ghost/x.bam", "ghost-folder/"):
        resp = http.post(
            "/storage/imports",
            json={"source": {"volume": vid, "location": location}, "destination": {"project": project["id"]}},
        )
        assert resp.status_code == 201, resp.text
        done = wait(http, "imports", resp.json()["id"])
        assert done["state"] == "FAILED" and done["result"] is None
        assert done["error"]["code"] == 9105 and f"s3://{bucket}/ghost" in done["error"]["message"]
        assert done["finished_on"] is not None
    assert http.get("/files", params={"project": project["id"]}).json()["items"] == files_before
    assert blob_count(server) == blobs_before
    failed = http.get("/storage/imports", params={"volume": vid, "state": "FAILED"})
    assert failed.json()["items"] and all(i["state"] == "FAILED" for i in failed.json()["items"])


def test_import_name_clash_fails_without_orphan_blob(
    http: httpx.Client, server: EmbeddedServer, local_volume: dict[str, Any], project: dict[str, Any]
) -> None:
    vid, root = local_volume["id"], local_volume["_root"]
    (root / "clash.txt").write_bytes(b"first")
    first = http.post(
        "/storage/imports",
        json={"source": {"volume": vid, "location": "clash.txt"}, "destination": {"project": project["id"]}},
    ).json()
    assert wait(http, "imports", first["id"])["state"] == "COMPLETED"
    (root / "clash.txt").write_bytes(b"second, different content")
    blobs_before = blob_count(server)
    second = http.post(
        "/storage/imports",
        json={"source": {"volume": vid, "location": "clash.txt"}, "destination": {"project": project["id"]}},
    ).json()
    done = wait(http, "imports", second["id"])
    assert done["state"] == "FAILED" and "clash.txt" in done["error"]["message"]
    assert blob_count(server) == blobs_before  # the new content's blob was removed again
    overwritten = http.post(
        "/storage/imports",
        json={
            "source": {"volume": vid, "location": "clash.txt"},
            "destination": {"project": project["id"]},
            "overwrite": True,
        },
    ).json()
    done = wait(http, "imports", overwritten["id"])
    assert (
        done["state"] == "COMPLETED"
        and done["result"]["id"] == wait(http, "imports", first["id"])["result"]["id"]
    )
    assert done["result"]["size"] == len(b"second, different content")
    # The overwritten file's old content ("first") is no longer referenced, so its blob is gone too.
    assert blob_count(server) == blobs_before
    target = http.get(f"/files/{done['result']['id']}/download_info").json()["url"]
    assert http.get(target).content == b"second, different content"


def test_bad_import_and_export_requests(
    http: httpx.Client, server: EmbeddedServer, local_volume: dict[str, Any], project: dict[str, Any]
) -> None:
    vid = local_volume["id"]
    pid = project["id"]
    before = snapshot(server.resolved_database_url)
    src = {"volume": vid, "location": "in/f0.txt"}
    cases: list[tuple[str, dict[str, Any], int, int | None, str]] = [
        ("imports", {"destination": {"project": pid}}, 400, 9011, "source"),
        (
            "imports",
            {"source": {"volume": vid}, "destination": {"project": pid}},
            400,
            9011,
            "source.location",
        ),
        (
            "imports",
            {"source": {"volume": "nobody/none", "location": "a"}, "destination": {"project": pid}},
            404,
            9007,
            "nobody/none",
        ),
        (
            "imports",
            {"source": {"volume": "malformed", "location": "a"}, "destination": {"project": pid}},
            400,
            9011,
            "malformed",
        ),
        ("imports", {"source": src, "destination": {}}, 400, None, "destination.project"),
        ("imports", {"source": src, "destination": {"project": "tester/none"}}, 404, 3002, "tester/none"),
        ("imports", {"source": src, "destination": {"parent": "0" * 24}}, 404, 5002, "0" * 24),
        ("imports", {"source": src, "destination": {"project": pid, "name": "a/b"}}, 400, 5024, "/"),
        (
            "imports",
            {"source": {**src, "location": "../etc/passwd"}, "destination": {"project": pid}},
            400,
            9011,
            "..",
        ),
        (
            "imports",
            {"source": src, "destination": {"project": pid}, "overwrite": "yes"},
            400,
            9011,
            "overwrite",
        ),
        (
            "imports",
            {"source": src, "destination": {"project": pid}, "overwrite": True, "autorename": True},
            400,
            None,
            "autorename",
        ),
        (
            "exports",
            {"source": {"file": "0" * 24}, "destination": {"volume": vid, "location": "x"}},
            404,
            5002,
            "0" * 24,
        ),
        (
            "exports",
            {"source": {}, "destination": {"volume": vid, "location": "x"}},
            400,
            9011,
            "source.file",
        ),
    ]
    for kind, body, status, code, word in cases:
        expect_error(http.post(f"/storage/{kind}", json=body), status, code, word)
    expect_error(http.post("/storage/exports?copy_only=maybe", json={}), 400, None, "copy_only")
    assert snapshot(server.resolved_database_url) == before


def _imported_file(http: httpx.Client, vid: str, pid: str) -> str:
    resp = http.post(
        "/storage/imports",
        json={
            "source": {"volume": vid, "location": "in/f1.txt"},
            "destination": {"project": pid},
            "autorename": True,
        },
    )
    done = wait(http, "imports", resp.json()["id"])
    assert done["state"] == "COMPLETED", done
    file_id: str = done["result"]["id"]
    return file_id


def test_export_rules(
    http: httpx.Client, server: EmbeddedServer, local_volume: dict[str, Any], project: dict[str, Any]
) -> None:
    file_id = _imported_file(http, local_volume["id"], project["id"])
    ro = http.post(
        "/storage/volumes",
        json={"name": f"ro_{uid()}", "access_mode": "RO", "service": {"type": "local", "root": str(ROOT)}},
    ).json()
    before = snapshot(server.resolved_database_url)
    resp = http.post(
        "/storage/exports",
        json={"source": {"file": file_id}, "destination": {"volume": ro["id"], "location": "o.txt"}},
    )
    expect_error(resp, 400, 9026, "read-only")
    folder = project["root_folder"]
    resp = http.post(
        "/storage/exports",
        json={"source": {"file": folder}, "destination": {"volume": local_volume["id"], "location": "o.txt"}},
    )
    expect_error(resp, 400, 9006, "folder")
    assert snapshot(server.resolved_database_url) == before
    assert not (ROOT / "o.txt").exists()

    root = local_volume["_root"]
    (root / "taken.txt").write_bytes(b"keep me")
    body = {
        "source": {"file": file_id},
        "destination": {"volume": local_volume["id"], "location": "taken.txt"},
    }
    done = wait(http, "exports", http.post("/storage/exports?copy_only=true", json=body).json()["id"])
    assert (
        done["state"] == "FAILED"
        and done["error"]["code"] == 9107
        and "taken.txt" in done["error"]["message"]
    )
    assert (root / "taken.txt").read_bytes() == b"keep me"
    done = wait(
        http,
        "exports",
        http.post("/storage/exports?copy_only=true", json={**body, "overwrite": True}).json()["id"],
    )
    assert done["state"] == "COMPLETED" and done["copy_only"] is True
    assert (root / "taken.txt").read_bytes() == b"file 1"
    assert not [p for p in root.iterdir() if p.name.startswith(".bridgehead-")]  # no temporary leftovers


def test_bulk_limits_and_per_item_errors(
    http: httpx.Client, local_volume: dict[str, Any], project: dict[str, Any]
) -> None:
    item = {
        "source": {"volume": local_volume["id"], "location": "in/f2.txt"},
        "destination": {"project": project["id"]},
    }
    expect_error(http.post("/bulk/storage/imports/create", json={"items": [item] * 101}), 400, None, "100")
    expect_error(http.post("/bulk/storage/imports/create", json={}), 400, None, "items")
    expect_error(http.post("/bulk/storage/exports/get", json={"export_ids": "x"}), 400, None, "export_ids")
    resp = http.post(
        "/bulk/storage/imports/create",
        json={
            "items": [
                item,
                {"source": {"volume": "no/such", "location": "a"}, "destination": {"project": project["id"]}},
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    first, second = resp.json()["items"]
    assert first["resource"]["state"] in ("PENDING", "RUNNING", "COMPLETED")
    assert second["error"]["code"] == 9007 and second["error"]["status"] == 404
    got = http.post(
        "/bulk/storage/imports/get", json={"import_ids": [first["resource"]["id"], "missing"]}
    ).json()
    assert got["items"][0]["resource"]["id"] == first["resource"]["id"]
    assert got["items"][1]["error"]["code"] == 9008


def test_permissions_and_members(
    http: httpx.Client,
    other: httpx.Client,
    local_volume: dict[str, Any],
    project: dict[str, Any],
    server: EmbeddedServer,
) -> None:
    vid = local_volume["id"]
    bob = other.get("/user").json()["username"]
    expect_error(other.get(f"/storage/volumes/{vid}"), 403, 9020, vid)
    expect_error(other.get(f"/storage/volumes/{vid}/list"), 403, 9020)
    assert vid not in [v["id"] for v in other.get("/storage/volumes").json()["items"]]
    # Only the admin's imports are visible to the admin; bob sees none of them.
    assert other.get("/storage/imports").json()["items"] == []

    added = http.post(
        f"/storage/volumes/{vid}/members",
        json={"username": bob, "permissions": {"read": True, "execute": True}},
    )
    assert added.status_code == 201, added.text
    assert added.json()["permissions"] == {"read": True, "copy": False, "write": False, "admin": False}
    expect_error(http.post(f"/storage/volumes/{vid}/members", json={"username": bob}), 409, None, bob)
    expect_error(
        http.patch(f"/storage/volumes/{vid}/members/{bob}/permissions", json={"fly": True}), 400, None, "fly"
    )
    members = http.get(f"/storage/volumes/{vid}/members")
    assert [m["username"] for m in members.json()["items"]] == [bob]

    assert other.get(f"/storage/volumes/{vid}").status_code == 200
    assert other.get(f"/storage/volumes/{vid}/list").status_code == 200
    before = snapshot(server.resolved_database_url)
    expect_error(other.patch(f"/storage/volumes/{vid}", json={"description": "mine"}), 403, 9020, "admin")
    expect_error(other.delete(f"/storage/volumes/{vid}"), 403, 9020)
    # bob may read the volume but has no write access to the admin's project nor 'write' on the volume.
    body = {"source": {"volume": vid, "location": "in/f0.txt"}, "destination": {"project": project["id"]}}
    expect_error(other.post("/storage/imports", json=body), 403, 3001, project["id"])
    assert snapshot(server.resolved_database_url) == before

    upd = http.patch(f"/storage/volumes/{vid}/members/{bob}/permissions", json={"write": True})
    assert upd.status_code == 200 and upd.json()["write"] is True
    assert http.get(f"/storage/volumes/{vid}/members/{bob}").json()["permissions"]["write"] is True
    assert http.get(f"/storage/volumes/{vid}/members/{bob}/permissions").json() == {
        "read": True,
        "copy": False,
        "write": True,
        "admin": False,
    }
    assert http.delete(f"/storage/volumes/{vid}/members/{bob}").status_code == 204
    expect_error(other.get(f"/storage/volumes/{vid}"), 403, 9020)
    expect_error(http.get(f"/storage/volumes/{vid}/members/{bob}"), 404, None, bob)


def test_concurrent_creates_of_one_name(http: httpx.Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = {"name": f"race_{uid()}", "access_mode": "RW", "service": {"type": "local", "root": str(ROOT)}}
    with ThreadPoolExecutor(6) as pool:
        codes = sorted(
            r.status_code for r in pool.map(lambda _: http.post("/storage/volumes", json=body), range(6))
        )
    assert codes == [201, 409, 409, 409, 409, 409]


def test_failed_folder_import_cleans_up_every_blob(
    http: httpx.Client, server: EmbeddedServer, local_volume: dict[str, Any], project: dict[str, Any]
) -> None:
    """A folder whose last object cannot be read (a symlink out of the volume) fails as a whole."""
    root = local_volume["_root"]
    folder = root / f"mixed{uid()}"
    folder.mkdir()
    for i in range(6):
        (folder / f"ok{i}.txt").write_bytes(uuid.uuid4().bytes)
    (OUTSIDE / "secret.txt").write_bytes(b"secret")
    os.symlink(OUTSIDE / "secret.txt", folder / "zz-link.txt")
    files_before = http.get("/files", params={"project": project["id"]}).json()["items"]
    blobs_before = blob_count(server)
    resp = http.post(
        "/storage/imports",
        json={
            "source": {"volume": local_volume["id"], "location": f"{folder.name}/"},
            "destination": {"project": project["id"]},
        },
    )
    done = wait(http, "imports", resp.json()["id"])
    assert done["state"] == "FAILED" and done["error"]["code"] == 9103
    assert "outside the volume" in done["error"]["message"]
    assert blob_count(server) == blobs_before
    assert http.get("/files", params={"project": project["id"]}).json()["items"] == files_before
