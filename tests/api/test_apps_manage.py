"""Apps on the wire: listing and search, copy and sync errors; failed calls change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from bridgehead.embedded import EmbeddedServer
from tests.support.dbstate import snapshot

DATA = Path(__file__).resolve().parents[1] / "data" / "apps"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return data


def app_rows(server: EmbeddedServer) -> tuple[str, str]:
    snap = snapshot(server.resolved_database_url)
    return snap["apps"], snap["app_revisions"]


@pytest.fixture(scope="module")
def projects(http: httpx.Client) -> tuple[str, str]:
    ids = []
    for name in ("manage source", "manage target"):
        resp = http.post("/projects", json={"name": name})
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    source, target = ids
    for name, doc in (("alpha", "wc.cwl"), ("beta", "expr.cwl"), ("gamma", "graph.cwl")):
        http.post(f"/apps/{source}/{name}/raw", json=load(doc)).raise_for_status()
    return source, target


def test_list_envelope_paging_and_raw_on_request(http: httpx.Client, projects: tuple[str, str]) -> None:
    source, _ = projects
    resp = http.get("/apps", params={"project": source, "limit": 2})
    assert resp.status_code == 200
    assert resp.headers["x-total-matching-query"] == "3"
    body = resp.json()
    assert [i["id"] for i in body["items"]] == [f"{source}/alpha/0", f"{source}/beta/0"]
    assert all("raw" not in i for i in body["items"])
    assert body["items"][0]["href"].endswith(f"/apps/{source}/alpha/0")
    assert [link["rel"] for link in body["links"]] == ["next"]
    nxt = http.get(body["links"][0]["href"]).json()
    assert [i["name"] for i in nxt["items"]] == ["gamma"]

    with_raw = http.get("/apps", params={"project": source, "fields": "id,raw"}).json()["items"]
    assert with_raw[0]["raw"]["sbg:id"] == f"{source}/alpha/0"
    assert set(with_raw[0]) == {"id", "raw"}


def test_search_terms_and_ids(http: httpx.Client, projects: tuple[str, str]) -> None:
    source, _ = projects
    # 'counts lines' is in the doc of alpha; every term must match somewhere
    found = http.get("/apps", params=[("q", "COUNTS"), ("q", "alp")]).json()["items"]
    assert [i["name"] for i in found] == ["alpha"]
    assert http.get("/apps", params=[("q", "counts"), ("q", "beta")]).json()["items"] == []
    found = http.get("/apps", params=[("id", f"{source}/beta"), ("id", f"{source}/gamma/0")]).json()["items"]
    assert [i["name"] for i in found] == ["beta", "gamma"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"visibility": "friends"}, 400, 6012),
        ({"project": "no-slash"}, 400, 3012),
        ({"project": "tester/absent"}, 404, 3002),
        ({"id": "a/b"}, 400, 6011),
        ({"limit": "many"}, 400, 90000),
    ],
)
def test_list_rejects_bad_filters(http: httpx.Client, params: dict[str, str], status: int, code: int) -> None:
    resp = http.get("/apps", params=params)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code
    assert resp.json()["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "needle"),
    [
        ("alpha/actions/copy", {"project": "{target}", "strategy": "photocopy"}, 400, 90000, "strategy"),
        ("alpha/actions/copy", {}, 400, 6009, "project"),
        ("alpha/actions/copy", {"project": "tester/nowhere"}, 404, 3002, "nowhere"),
        ("alpha/actions/copy", {"project": "{target}", "name": "bad name"}, 400, 6011, "bad name"),
        ("alpha/actions/copy", {"project": "{source}"}, 409, 6003, "already exists"),
        ("alpha/7/actions/copy", {"project": "{target}"}, 404, 6002, "revision 7"),
        ("missing/actions/copy", {"project": "{target}"}, 404, 6002, "missing"),
        ("alpha/actions/sync", None, 400, 6010, "not a copy"),
    ],
)
def test_copy_and_sync_errors_change_nothing(
    server: EmbeddedServer,
    http: httpx.Client,
    projects: tuple[str, str],
    path: str,
    body: dict[str, str] | None,
    status: int,
    code: int,
    needle: str,
) -> None:
    source, target = projects
    if body is not None:
        body = {k: v.format(source=source, target=target) for k, v in body.items()}
    before = app_rows(server)
    resp = http.post(f"/apps/{source}/{path}", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code
    assert needle in resp.json()["message"]
    assert app_rows(server) == before


def test_transient_copy_takes_one_revision_and_sync_follows(
    server: EmbeddedServer, http: httpx.Client, projects: tuple[str, str]
) -> None:
    source, target = projects
    http.post(f"/apps/{source}/alpha/1/raw", json={**load("wc.cwl"), "label": "alpha two"}).raise_for_status()
    resp = http.post(f"/apps/{source}/alpha/actions/copy", json={"project": target, "strategy": "transient"})
    assert resp.status_code == 200, resp.text
    copy = resp.json()
    assert copy["id"] == f"{target}/alpha/0" and copy["copy_of"] == f"{source}/alpha/1"
    assert copy["raw"]["label"] == "alpha two" and copy["raw"]["sbg:project"] == target
    assert [i["sbg:revision"] for i in copy["raw"]["sbg:revisionsInfo"]] == [0]

    # a new revision installed on the copy keeps its provenance
    own = http.post(f"/apps/{target}/alpha/raw", json={**load("wc.cwl"), "label": "local"}).json()
    assert own["sbg:id"] == f"{target}/alpha/1" and own["sbg:copyOf"] == f"{source}/alpha/1"

    http.post(f"/apps/{source}/alpha/raw", json={**load("wc.cwl"), "label": "alpha three"}).raise_for_status()
    synced = http.post(f"/apps/{target}/alpha/actions/sync", json=None).json()
    assert synced["revision"] == 2 and synced["raw"]["label"] == "alpha three"
    assert synced["copy_of"] == f"{source}/alpha/2"
    again = http.post(f"/apps/{target}/alpha/actions/sync").json()
    assert again["revision"] == 2
    # copies reuse the source revision's summary instead of loading the CWL again
    assert summary_of(server, f"{target}/alpha", 2) == summary_of(server, f"{source}/alpha", 2)
    assert summary_of(server, f"{target}/alpha", 0)["label"] == "alpha two"


def summary_of(server: EmbeddedServer, app_id: str, revision: int) -> dict[str, Any]:
    engine = create_engine(server.resolved_database_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(
                text(
                    "SELECT r.summary FROM app_revisions r JOIN apps a ON a.id = r.app_id "
                    "WHERE a.sbg_id = :id AND r.revision = :rev"
                ),
                {"id": app_id, "rev": revision},
            ).scalar_one()
    finally:
        engine.dispose()
    found: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
    return found
