"""Wire-level task API: create, get, list, patch, run to COMPLETED with outputs, and refusals."""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.dbstate import snapshot
from tests.support.taskapps import add_file, delete_file, install_app


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> str:
    resp = http.post("/projects", json={"name": "task wire"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@pytest.fixture(scope="module")
def app_id(server: EmbeddedServer, project: str) -> str:
    return install_app(server, project, "tool")


@pytest.fixture(scope="module")
def reads(server: EmbeddedServer, project: str) -> list[str]:
    return [add_file(server, project, f"s{i}.fastq", f"read {i}\n".encode()) for i in range(3)]


def wait_status(
    http: httpx.Client, task_id: str, statuses: tuple[str, ...], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/tasks/{task_id}").json()
        if body["status"] in statuses or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def settle(http: httpx.Client, timeout: float = 30) -> None:
    """Wait until the dispatcher has nothing left to do, so a database snapshot is stable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = http.get("/tasks", params={"status": ["QUEUED", "RUNNING", "ABORTING"], "limit": 1})
        if busy.headers["x-total-matching-query"] == "0":
            return
        time.sleep(0.1)
    raise AssertionError("tasks still running")


def test_create_draft_echoes_every_input_and_output(
    http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    resp = http.post(
        "/tasks",
        json={
            "name": "t1",
            "project": project,
            "app": app_id,
            "inputs": {"reads": [{"class": "File", "path": reads[0]}, reads[1]]},
        },
    )
    assert resp.status_code == 201, resp.text
    task = resp.json()
    assert task["status"] == "DRAFT"
    assert task["app"] == app_id + "/0"
    assert task["type"] == "v2" and task["batch"] is False
    assert task["errors"] == [] and task["warnings"] == []
    assert [i["name"] for i in task["inputs"]["reads"]] == ["s0.fastq", "s1.fastq"]
    assert task["inputs"]["reads"][1] == {
        "class": "File",
        "path": reads[1],
        "name": "s1.fastq",
        "size": 7,
        "metadata": {},
    }
    assert task["inputs"]["threads"] is None and task["inputs"]["reference"] is None
    assert task["outputs"] == {"result": None, "summary": None, "count": None}
    assert task["price"] == {
        "currency": "USD",
        "amount": "0.00",
        "breakdown": {"storage": "0.00", "computation": "0.00"},
    }
    assert task["href"].endswith(f"/v2/tasks/{task['id']}")
    assert http.get(f"/tasks/{task['id']}").json()["inputs"] == task["inputs"]


def test_run_completes_with_outputs_as_project_files(
    http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    created = http.post(
        "/tasks",
        params={"action": "run"},
        json={"name": "runme", "project": project, "app": app_id, "inputs": {"reads": reads}},
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] in ("QUEUED", "RUNNING", "COMPLETED")
    done = wait_status(http, created.json()["id"], ("COMPLETED", "FAILED"))
    assert done["status"] == "COMPLETED", done["execution_status"]
    result = done["outputs"]["result"]
    assert result["class"] == "File" and result["name"] == "result.txt" and result["size"] > 0
    assert done["outputs"]["count"] == 1
    f = (
        http.get(f"/files/{result['path']}").json()
        if http.get(f"/files/{result['path']}").status_code == 200
        else None
    )
    if f is not None:
        assert f["origin"]["task"] == done["id"]
    es = done["execution_status"]
    assert es["message"] == "Completed" and es["steps_completed"] == es["steps_total"] == 1
    for key in ("queued_duration", "running_duration", "execution_duration", "duration"):
        assert isinstance(es[key], int)
    assert done["start_time"] and done["end_time"] and done["executed_by"] == "tester"


def test_validation_errors_are_listed_with_input_ids(
    server: EmbeddedServer, http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    other = http.post("/projects", json={"name": "elsewhere"}).json()["id"]
    foreign = add_file(server, other, "x.fastq")
    ref = add_file(server, project, "ref.fa")
    add_file(server, project, "ref.fa.fai")
    bad_name = add_file(server, project, "bad name!.fastq")
    body = {
        "project": project,
        "app": app_id,
        "inputs": {
            "reads": [reads[0], foreign, bad_name],
            "reference": {"class": "File", "path": ref},
            "threads": "four",
            "mode": "medium",
        },
    }
    task = http.post("/tasks", json=body).json()
    kinds = {(e["type"].rsplit("/", 1)[-1], e["input_id"]) for e in task["errors"]}
    assert ("files_missing", "reads") in kinds
    assert ("invalid_name_files", "reads") in kinds
    assert ("secondary_files_missing", "reference") in kinds  # ref.dict is missing, ref.fa.fai is there
    assert ("schema", "threads") in kinds and ("schema", "mode") in kinds
    assert task["inputs"]["reference"]["secondaryFiles"][0]["name"] == "ref.fa.fai"
    missing = http.post("/tasks", json={"project": project, "app": app_id, "inputs": {}}).json()
    assert [(e["type"], e["input_id"]) for e in missing["errors"]] == [
        ("error/task_validation/input/required", "reads")
    ]
    run = http.post(f"/tasks/{missing['id']}/actions/run")
    assert run.status_code == 400 and run.json()["code"] == 7024 and "reads" in run.json()["message"]
    assert http.get(f"/tasks/{missing['id']}").json()["status"] == "DRAFT"


def test_patch_merges_inputs_and_refuses_non_draft(
    http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    task = http.post(
        "/tasks", json={"project": project, "app": app_id, "inputs": {"reads": reads[:1], "threads": 2}}
    ).json()
    patched = http.patch(f"/tasks/{task['id']}", json={"name": "renamed", "inputs": {"label": "x"}}).json()
    assert patched["name"] == "renamed"
    assert patched["inputs"]["threads"] == 2 and patched["inputs"]["label"] == "x"
    assert len(patched["inputs"]["reads"]) == 1
    ins = http.patch(f"/tasks/{task['id']}/inputs", json={"threads": 8})
    assert ins.status_code == 200 and ins.json()["threads"] == 8 and ins.json()["label"] == "x"
    assert http.post(f"/tasks/{task['id']}/actions/run").json()["status"] in (
        "QUEUED",
        "RUNNING",
        "COMPLETED",
    )
    refused = http.patch(f"/tasks/{task['id']}", json={"inputs": {"threads": 1}})
    assert refused.status_code == 400 and refused.json()["code"] == 7026
    assert http.patch(f"/tasks/{task['id']}", json={"name": "only rename"}).json()["name"] == "only rename"
    rerun = http.post(f"/tasks/{task['id']}/actions/run")
    assert rerun.status_code == 400 and rerun.json()["code"] == 7007


def test_bad_requests_change_nothing(
    server: EmbeddedServer, http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    settle(http)
    before = snapshot(server.resolved_database_url)
    cases: list[tuple[dict[str, Any], int, int, str]] = [
        ({"project": project, "app": f"{project}/nope"}, 404, 6002, "nope"),
        ({"project": "nobody/none", "app": app_id}, 404, 3002, "nobody/none"),
        ({"project": project, "app": app_id, "inputs": []}, 400, 90000, "inputs"),
        (
            {"project": project, "app": app_id, "batch_input": "reads", "batch_by": {"type": "SIDEWAYS"}},
            400,
            7020,
            "batch_by.type",
        ),
        (
            {
                "project": project,
                "app": app_id,
                "batch_input": "reads",
                "batch_by": {"type": "criteria", "criteria": ["sample_id"]},
            },
            400,
            90000,
            "batch_by.criteria[0]",
        ),
        ({"project": project, "app": app_id, "batch_input": "reads"}, 400, 7023, "batch_"),
        (
            {"project": project, "app": app_id, "batch_input": "nothere", "batch_by": {"type": "ITEM"}},
            400,
            7018,
            "batch_input",
        ),
        (
            {"project": project, "app": app_id, "execution_settings": {"max_parallel_instances": "many"}},
            400,
            90000,
            "execution_settings.max_parallel_instances",
        ),
        (
            {"project": project, "app": app_id, "output_location": {"nodes_location": {"ghost": {}}}},
            400,
            90000,
            "ghost",
        ),
    ]
    for body, status, code, word in cases:
        resp = http.post("/tasks", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["code"] == code, (body, resp.text)
        assert word in resp.json()["message"], (body, resp.text)
    assert http.get("/tasks", params={"status": "SLEEPING"}).json()["code"] == 7006
    assert http.get("/tasks/not-a-uuid").status_code == 404
    assert http.post("/tasks/00000000-0000-4000-8000-000000000000/actions/run").json()["code"] == 7002
    assert snapshot(server.resolved_database_url) == before


def test_file_deleted_after_queueing_fails_the_task(
    server: EmbeddedServer, http: httpx.Client, project: str, app_id: str
) -> None:
    doomed = add_file(server, project, "doomed.fastq")
    task = http.post(
        "/tasks",
        json={
            "project": project,
            "app": app_id,
            "inputs": {"reads": [doomed]},
            "execution_settings": {"fake_duration": 0},
        },
    ).json()
    delete_file(server, doomed)
    run = http.post(f"/tasks/{task['id']}/actions/run")
    assert run.status_code == 400 and run.json()["code"] == 7024  # revalidated at run: files_missing
    assert http.get(f"/tasks/{task['id']}").json()["errors"] == []  # refusal changed nothing


def test_refused_actions_change_nothing(
    server: EmbeddedServer,
    http: httpx.Client,
    project: str,
    app_id: str,
    reads: list[str],
    ssl_context: ssl.SSLContext,
) -> None:
    done = http.post(
        "/tasks",
        params={"action": "run"},
        json={"project": project, "app": app_id, "inputs": {"reads": reads[:1]}},
    ).json()
    assert wait_status(http, done["id"], ("COMPLETED",))["status"] == "COMPLETED"
    draft = http.post(
        "/tasks", json={"project": project, "app": app_id, "inputs": {"reads": reads[:1]}}
    ).json()
    token = server.create_user("reader")
    member = http.post(
        f"/projects/{project}/members",
        json={"username": "reader", "permissions": {"read": True, "write": False, "execute": False}},
    )
    assert member.status_code == 201, member.text
    settle(http)
    before = snapshot(server.resolved_database_url)
    assert http.patch(f"/tasks/{done['id']}", json={"inputs": {"threads": 3}}).json()["code"] == 7026
    assert http.patch(f"/tasks/{done['id']}/inputs", json={"threads": 3}).json()["code"] == 7007
    assert http.post(f"/tasks/{done['id']}/actions/run").json()["code"] == 7007
    assert http.post(f"/tasks/{done['id']}/actions/abort").json()["code"] == 7011
    assert http.post(f"/tasks/{draft['id']}/actions/abort").json()["code"] == 7011
    bad_batch = http.patch(f"/tasks/{draft['id']}", json={"batch_input": "reads", "batch_by": {"type": "x"}})
    assert bad_batch.status_code == 400 and bad_batch.json()["code"] == 7020
    bad_inputs = http.patch(f"/tasks/{draft['id']}", json={"inputs": ["reads"]})
    assert bad_inputs.status_code == 400 and "inputs" in bad_inputs.json()["message"]
    with httpx.Client(base_url=server.url, verify=ssl_context, headers={"X-SBG-Auth-Token": token}) as reader:
        assert reader.get(f"/tasks/{draft['id']}").status_code == 200
        assert reader.post(f"/tasks/{draft['id']}/actions/run").status_code == 403
        assert reader.patch(f"/tasks/{draft['id']}", json={"name": "mine"}).status_code == 403
        assert reader.post(f"/tasks/{draft['id']}/actions/clone").status_code == 403
        assert reader.delete(f"/tasks/{draft['id']}").status_code == 403
    assert snapshot(server.resolved_database_url) == before
