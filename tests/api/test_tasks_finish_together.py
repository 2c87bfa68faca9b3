"""Runs that end in the same dispatcher pass are finished together (one flush for all their folders and
log files): each task must still get exactly what finishing it alone gives, through the real API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.taskapps import SUMMARY, add_file, install_app
from tests.support.taskapps import wait_task as wait

SERVER_ENV = {"BRIDGEHEAD_MAX_CORES": "64"}
WORDS = ["w0", "w1", "fake:fail", "w3", "w4", "w5", "w6", "w7"]


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> str:
    return str(http.post("/projects", json={"name": "together"}).json()["id"])


@pytest.fixture(scope="module")
def app_id(server: EmbeddedServer, project: str) -> str:
    summary = {
        **SUMMARY,
        "inputs": [
            *SUMMARY["inputs"][:1],
            {"id": "words", "type": "string", "required": True, "secondaryFiles": []},
        ],
    }
    return install_app(server, project, "words", summary=summary)


def listing(http: httpx.Client, **params: str) -> list[dict[str, Any]]:
    resp = http.get("/files", params={**params, "limit": "100"})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


def test_batch_children_finished_together_each_get_their_folder_logs_and_outputs(
    server: EmbeddedServer, http: httpx.Client, project: str, app_id: str
) -> None:
    reads = [add_file(server, project, "in.fastq")]
    body = {
        "project": project,
        "app": app_id,
        "name": "grp",
        "batch_input": "words",
        "batch_by": {"type": "ITEM"},
        "inputs": {"reads": reads, "words": WORDS},
    }
    resp = http.post("/tasks", params={"action": "run"}, json=body)
    assert resp.status_code == 201, resp.text + server.log_text()[-3000:]
    parent = wait(http, resp.json()["id"])
    assert parent["status"] == "FAILED"
    assert (parent["execution_status"]["completed"], parent["execution_status"]["failed"]) == (7, 1)
    children = http.get("/tasks", params={"parent": parent["id"], "limit": "50"}).json()["items"]
    assert len(children) == len(WORDS)
    root = {f["name"]: f for f in listing(http, project=project)}
    for child in children:
        task = http.get(f"/tasks/{child['id']}").json()
        folder = root[f"{task['name']}_{task['id'][:8]}"]  # the default output folder, one per task
        inside = {f["name"]: f for f in listing(http, parent=folder["id"])}
        logs = listing(http, parent=inside[".logs"]["id"])
        assert [f["name"] for f in logs] == ["words.stdout.log"]
        assert logs[0]["origin"]["task"] == task["id"] and logs[0]["size"] > 0
        if task["batch_group"]["value"] == "fake:fail":
            assert task["status"] == "FAILED" and "fail" in task["execution_status"]["message"]
            assert set(inside) == {".logs"}
            continue
        assert task["status"] == "COMPLETED", task["execution_status"]
        result = task["outputs"]["result"]
        assert inside[result["name"]]["id"] == result["path"]
        assert inside[result["name"]]["origin"]["task"] == task["id"]
        assert task["outputs"]["count"] == 1
        details = http.get(f"/tasks/{task['id']}/execution_details").json()
        assert f"/files/{logs[0]['id']}/" in details["jobs"][0]["logs"]["stdout.log"]


def test_an_existing_folder_of_the_default_name_is_reused(
    server: EmbeddedServer, http: httpx.Client, project: str, app_id: str
) -> None:
    reads = [add_file(server, project, "in2.fastq")]
    drafts = [
        http.post(
            "/tasks",
            json={
                "project": project,
                "app": app_id,
                "name": f"pre{i}",
                "inputs": {"reads": reads, "words": "x"},
            },
        ).json()
        for i in range(3)
    ]
    taken = http.post(
        "/files", json={"name": f"pre0_{drafts[0]['id'][:8]}", "project": project, "type": "folder"}
    )
    assert taken.status_code == 201, taken.text
    for d in drafts:
        assert http.post(f"/tasks/{d['id']}/actions/run").status_code == 200
    done = [wait(http, d["id"]) for d in drafts]
    assert [t["status"] for t in done] == ["COMPLETED"] * 3
    inside = {f["name"]: f for f in listing(http, parent=taken.json()["id"])}
    assert inside[done[0]["outputs"]["result"]["name"]]["id"] == done[0]["outputs"]["result"]["path"]
    assert ".logs" in inside
