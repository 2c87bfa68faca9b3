"""Task listing filters and ordering, bulk get with ``fields``, and the less common request spellings."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.taskapps import add_file, install_app


@pytest.fixture(scope="module")
def setup(server: EmbeddedServer, http: httpx.Client) -> dict[str, Any]:
    project = http.post("/projects", json={"name": "queries"}).json()["id"]
    app = install_app(server, project, "tool")
    reads = [add_file(server, project, f"q{i}.fastq") for i in range(2)]
    names = ["bravo", "alpha", "charlie"]
    ids = []
    for name in names:
        ids.append(
            http.post(
                "/tasks", json={"project": project, "app": app, "name": name, "inputs": {"reads": reads}}
            ).json()["id"]
        )
        time.sleep(1.1)  # distinct created_time seconds
    return {"project": project, "app": app, "reads": reads, "ids": ids, "names": names}


def listed(http: httpx.Client, **params: Any) -> list[str]:
    resp = http.get("/tasks", params=params)
    assert resp.status_code == 200, resp.text
    return [t["name"] for t in resp.json()["items"]]


def test_default_order_is_newest_first_and_order_by_defaults_to_ascending(
    http: httpx.Client, setup: dict[str, Any]
) -> None:
    p = setup["project"]
    assert listed(http, project=p) == ["charlie", "alpha", "bravo"]
    assert listed(http, project=p, order_by="created_time") == ["bravo", "alpha", "charlie"]
    assert listed(http, project=p, order_by="name") == ["alpha", "bravo", "charlie"]
    assert listed(http, project=p, order_by="name", order="desc") == ["charlie", "bravo", "alpha"]
    bad = http.get("/tasks", params={"order_by": "colour"})
    assert bad.status_code == 400 and "order_by" in bad.json()["message"]


def test_paging_keeps_filters_and_total(http: httpx.Client, setup: dict[str, Any]) -> None:
    resp = http.get("/tasks", params={"project": setup["project"], "limit": 2, "order_by": "name"})
    assert resp.headers["x-total-matching-query"] == "3"
    body = resp.json()
    assert [t["name"] for t in body["items"]] == ["alpha", "bravo"]
    nxt = next(link for link in body["links"] if link["rel"] == "next")["href"]
    assert "project=" in nxt and "order_by=name" in nxt
    assert [t["name"] for t in http.get(nxt).json()["items"]] == ["charlie"]


def test_date_filters_accept_the_documented_forms(http: httpx.Client, setup: dict[str, Any]) -> None:
    p = setup["project"]
    first = http.get(f"/tasks/{setup['ids'][0]}").json()["created_time"]
    created = datetime.strptime(first, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    after = (created + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert listed(http, project=p, created_from=after, order_by="name") == ["alpha", "charlie"]
    assert listed(http, project=p, created_to=first) == ["bravo"]
    day = created.strftime("%Y-%m-%d")
    assert len(listed(http, project=p, created_from=day)) == 3
    shifted = (created + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S") + "+02:00"
    assert listed(http, project=p, created_to=shifted) == ["bravo"]
    assert listed(http, project=p, started_from=day) == []
    bad = http.get("/tasks", params={"created_from": "yesterday"})
    assert bad.status_code == 400 and "created_from" in bad.json()["message"]


def test_bulk_get_with_resource_fields(http: httpx.Client, setup: dict[str, Any]) -> None:
    ids = setup["ids"][:2]
    resp = http.post(
        "/bulk/tasks/get", params={"fields": "resource.id,resource.status"}, json={"task_ids": [*ids, "nope"]}
    )
    items = resp.json()["items"]
    assert items[0] == {"resource": {"id": ids[0], "status": "DRAFT"}}
    assert items[2]["error"]["code"] == 7002 and items[2]["error"]["status"] == 404
    too_many = http.post("/bulk/tasks/get", json={"task_ids": ids * 60})
    assert too_many.status_code == 400 and "task_ids" in too_many.json()["message"]


def test_run_alias_top_level_locations_and_null_batching(http: httpx.Client, setup: dict[str, Any]) -> None:
    p, app, reads = setup["project"], setup["app"], setup["reads"]
    body = {
        "project": p,
        "app": app,
        "inputs": {"reads": reads},
        "main_location": "/top/<task_name>",
        "nodes_override": True,
        "batch_input": "reads",
        "batch_by": {"type": "ITEM"},
    }
    task = http.post("/tasks", json=body).json()
    assert task["output_location"] == {"main_location": "/top/<task_name>", "nodes_override": True}
    assert task["batch"] is True
    off = http.patch(f"/tasks/{task['id']}", json={"batch_input": None, "batch_by": None}).json()
    assert off["batch"] is False and off["batch_input"] is None and off["batch_by"] is None
    half = http.patch(f"/tasks/{task['id']}", json={"batch_by": {"type": "ITEM"}})
    assert half.status_code == 400 and half.json()["code"] == 7023
    ran = http.post(
        "/tasks", params={"run": "true"}, json={"project": p, "app": app, "inputs": {"reads": reads}}
    )
    assert ran.json()["status"] != "DRAFT"
    wrong = http.post("/tasks", params={"action": "launch"}, json={"project": p, "app": app})
    assert wrong.status_code == 400 and wrong.json()["code"] == 7013
    inputs = http.get(f"/tasks/{task['id']}/inputs").json()
    assert set(inputs) == {"reads", "reference", "threads", "mode", "label", "options"}
    assert http.post(f"/tasks/{task['id']}/actions/fly").json()["code"] == 7013


def test_status_and_batch_filters(http: httpx.Client, setup: dict[str, Any]) -> None:
    p = setup["project"]
    drafts = http.get("/tasks", params={"project": p, "status": "draft"}).json()["items"]
    assert drafts and all(t["status"] == "DRAFT" for t in drafts)
    both = http.get("/tasks", params=[("project", p), ("status", "DRAFT"), ("status", "COMPLETED")])
    assert both.status_code == 200
    assert all(
        t["batch"] is False
        for t in http.get("/tasks", params={"project": p, "batch": "False"}).json()["items"]
    )
    assert http.get("/tasks", params={"parent": "x"}).json()["code"] == 7005
