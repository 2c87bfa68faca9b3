"""The total of ``GET /tasks?project=…`` comes from the trigger-kept ``project_task_counts``; every way
tasks are created or go away (creation, batch expansion, clone, delete, direct inserts, a deleted
project) must keep it equal to a real COUNT, and filtered listings still count for real."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bridgehead.embedded import EmbeddedServer
from tests.cluster.support import seed_queued
from tests.support.dbstate import assert_same_pairs
from tests.support.taskapps import add_file, install_app, wait_task


def total(http: httpx.Client, **params: Any) -> int:
    resp = http.get("/tasks", params={**params, "limit": 1})
    assert resp.status_code == 200, resp.text
    return int(resp.headers["X-Total-Matching-Query"])


def counts_match_reality(server: EmbeddedServer) -> None:
    assert_same_pairs(
        server.resolved_database_url,
        "SELECT project_id, tasks FROM project_task_counts",
        "SELECT project_id, COUNT(*) FROM tasks GROUP BY project_id",
    )


@pytest.fixture(scope="module")
def setup(server: EmbeddedServer, http: httpx.Client) -> dict[str, Any]:
    project = http.post("/projects", json={"name": "task totals"}).json()["id"]
    app = install_app(server, project, "tool")
    reads = [add_file(server, project, f"t{i}.fastq") for i in range(3)]
    return {"project": project, "app": app, "reads": reads}


def test_totals_follow_every_change(
    server: EmbeddedServer, http: httpx.Client, setup: dict[str, Any]
) -> None:
    project, app, reads = setup["project"], setup["app"], setup["reads"]
    assert total(http, project=project) == 0
    body = {"project": project, "app": app, "inputs": {"reads": reads[:1]}}
    draft = http.post("/tasks", json=body).json()
    ran = http.post("/tasks", params={"action": "run"}, json=body).json()
    assert total(http, project=project) == 2
    counts_match_reality(server)

    batch = {**body, "inputs": {"reads": reads}, "batch_input": "reads", "batch_by": {"type": "ITEM"}}
    parent = http.post("/tasks", params={"action": "run"}, json=batch).json()
    assert wait_task(http, parent["id"])["status"] == "COMPLETED"
    assert total(http, project=project) == 2 + 1 + 3  # the children count too
    assert total(http, project=project, parent=parent["id"]) == 3  # filtered: a real COUNT
    counts_match_reality(server)

    clone = http.post(f"/tasks/{draft['id']}/actions/clone").json()
    assert total(http, project=project) == 7
    assert http.delete(f"/tasks/{clone['id']}").status_code == 204
    assert wait_task(http, ran["id"])["status"] == "COMPLETED"
    assert http.delete(f"/tasks/{ran['id']}").status_code == 204
    assert total(http, project=project) == 5
    assert total(http, project=project, status="COMPLETED") == 4
    counts_match_reality(server)

    seed_queued(create_engine(server.resolved_database_url, poolclass=NullPool), project, "tool", 25, "x")
    assert total(http, project=project) == 30
    counts_match_reality(server)


def test_a_deleted_project_leaves_no_count(server: EmbeddedServer, http: httpx.Client) -> None:
    project = http.post("/projects", json={"name": "short lived"}).json()["id"]
    app = install_app(server, project, "tool")
    for _ in range(3):
        http.post("/tasks", json={"project": project, "app": app})
    assert total(http, project=project) == 3
    assert http.delete(f"/projects/{project}").status_code == 204
    counts_match_reality(server)
