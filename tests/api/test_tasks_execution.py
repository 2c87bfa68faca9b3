"""Execution through the dispatcher on the fake engine: prices, failures, reruns, recovery, exports."""

from __future__ import annotations

import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.taskapps import SUMMARY, add_file, install_app, project_and_app_fixtures
from tests.support.taskapps import wait_task as wait

VOLUME_ROOT = Path(tempfile.mkdtemp(prefix="bh-task-vol-"))
# Price one CPU-hour at 3600 USD so the computation price reads as run seconds.
SERVER_ENV = {
    "BRIDGEHEAD_PRICE_CPU_HOUR": "3600",
    "BRIDGEHEAD_MAX_CORES": "4",
    "BRIDGEHEAD_VOLUME_ROOTS": str(VOLUME_ROOT),
}


project, app_id = project_and_app_fixtures("exec", "tool")


@pytest.fixture(scope="module")
def reads(server: EmbeddedServer, project: str) -> list[str]:
    return [add_file(server, project, f"x{i}.fastq") for i in range(3)]


def run(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    resp = http.post("/tasks", params={"action": "run"}, json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["errors"] == [], resp.json()["errors"]
    return wait(http, resp.json()["id"])


def test_price_follows_run_time(http: httpx.Client, project: str, app_id: str, reads: list[str]) -> None:
    done = run(
        http,
        {
            "project": project,
            "app": app_id,
            "inputs": {"reads": reads[:1]},
            "execution_settings": {"fake_duration": 1},
        },
    )
    assert done["status"] == "COMPLETED"
    price = done["price"]
    assert price["currency"] == "USD" and 0.9 <= float(price["breakdown"]["computation"]) <= 10
    assert float(price["amount"]) == pytest.approx(
        float(price["breakdown"]["computation"]) + float(price["breakdown"]["storage"]), abs=0.011
    )
    assert done["execution_status"]["running_duration"] >= 900


def test_missing_required_output_fails_naming_it(
    http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    done = run(
        http, {"project": project, "app": app_id, "inputs": {"reads": reads[:1], "label": "fake:no-outputs"}}
    )
    assert done["status"] == "FAILED"
    assert "result" in done["execution_status"]["message"] and "count" in done["execution_status"]["message"]


def test_failed_child_fails_parent_and_rerun_takes_only_failures(
    server: EmbeddedServer, http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    body = {
        "project": project,
        "app": app_id,
        "batch_input": "options",
        "batch_by": {"type": "ITEM"},
        "inputs": {"reads": reads[:1]},
    }
    # Batch over a string-list port: one child gets the value that makes the fake engine fail.
    install_app(
        server,
        project,
        "strings",
        summary={
            **SUMMARY,
            "inputs": [
                *SUMMARY["inputs"][:1],
                {"id": "words", "type": "string", "required": True, "secondaryFiles": []},
            ],
        },
    )
    body = {
        "project": project,
        "app": f"{project}/strings",
        "batch_input": "words",
        "batch_by": {"type": "ITEM"},
        "inputs": {"reads": reads[:1], "words": ["ok-1", "fake:fail", "ok-2"]},
    }
    parent = run(http, body)
    assert parent["status"] == "FAILED" and parent["batch"] is True
    es = parent["execution_status"]
    assert (es["completed"], es["failed"]) == (2, 1)
    children = http.get("/tasks", params={"parent": parent["id"], "status": "FAILED"}).json()["items"]
    assert [c["batch_group"]["value"] for c in children] == ["fake:fail"]
    rerun = http.post(f"/tasks/{parent['id']}/actions/clone", params={"failed_only": "true"}).json()
    assert rerun["status"] == "DRAFT" and rerun["origin_id"] == parent["id"]
    assert rerun["inputs"]["words"] == ["fake:fail"]
    refused = http.post(f"/tasks/{children[0]['id']}/actions/clone", params={"failed_only": "true"})
    assert refused.status_code == 400 and "failed_only" in refused.json()["message"]


def test_task_larger_than_the_machine_fails_clearly(
    server: EmbeddedServer, http: httpx.Client, project: str, reads: list[str]
) -> None:
    install_app(server, project, "huge", summary={**SUMMARY, "resources": {"cores": 64, "ram_mib": 256}})
    done = run(http, {"project": project, "app": f"{project}/huge", "inputs": {"reads": reads[:1]}})
    assert done["status"] == "FAILED"
    assert (
        "64 cores" in done["execution_status"]["message"]
        and "at most 4" in done["execution_status"]["message"]
    )


def test_admission_respects_capacity(http: httpx.Client, project: str, app_id: str, reads: list[str]) -> None:
    ids = [
        http.post(
            "/tasks",
            params={"action": "run"},
            json={
                "project": project,
                "app": app_id,
                "inputs": {"reads": reads[:1]},
                "execution_settings": {"fake_duration": 1.5},
            },
        ).json()["id"]
        for _ in range(6)
    ]
    time.sleep(0.8)
    running = sum(http.get(f"/tasks/{i}").json()["status"] == "RUNNING" for i in ids)
    assert running == 4  # four 1-core tasks fill BRIDGEHEAD_MAX_CORES=4; two wait QUEUED
    assert all(wait(http, i)["status"] == "COMPLETED" for i in ids)


def test_outputs_exported_to_a_volume(
    http: httpx.Client, project: str, app_id: str, reads: list[str]
) -> None:
    root = Path(tempfile.mkdtemp(dir=VOLUME_ROOT))
    vol = http.post(
        "/storage/volumes",
        json={"name": "taskout", "access_mode": "RW", "service": {"type": "local", "root": str(root)}},
    )
    assert vol.status_code == 201, vol.text
    volume = vol.json()["id"]
    done = run(
        http,
        {
            "project": project,
            "app": app_id,
            "name": "exp",
            "inputs": {"reads": reads[:1]},
            "output_location": {
                "main_location": "/kept/<task_id>",
                "nodes_location": {"result": {"output_location": f"volume://{volume}/runs/<task_id>"}},
            },
        },
    )
    assert done["status"] == "COMPLETED"
    exports = done["output_location"]["exports"]
    assert [(e["output_id"], e["volume"], e["location"]) for e in exports] == [
        ("result", volume, f"runs/{done['id']}/result.txt")
    ]
    deadline = time.monotonic() + 30
    target = root / "runs" / done["id"] / "result.txt"
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.read_text().startswith("output result")
    folder = http.get(f"/files/{done['outputs']['result']['path']}").json()["parent"]
    kept = http.get(f"/files/{folder}").json()  # main_location: /kept/<task_id>
    assert kept["name"] == done["id"] and http.get(f"/files/{kept['parent']}").json()["name"] == "kept"


def test_delete_rules(http: httpx.Client, project: str, app_id: str, reads: list[str]) -> None:
    draft = http.post(
        "/tasks", json={"project": project, "app": app_id, "inputs": {"reads": reads[:1]}}
    ).json()
    assert http.delete(f"/tasks/{draft['id']}").status_code == 204
    assert http.get(f"/tasks/{draft['id']}").status_code == 404
    long = http.post(
        "/tasks",
        params={"action": "run"},
        json={
            "project": project,
            "app": app_id,
            "inputs": {"reads": reads[:1]},
            "execution_settings": {"fake_duration": 30},
        },
    ).json()
    refused = http.delete(f"/tasks/{long['id']}")
    assert refused.status_code == 400 and refused.json()["code"] == 7007
    assert http.post(f"/tasks/{long['id']}/actions/abort").status_code == 200
    assert wait(http, long["id"])["status"] == "ABORTED"
    assert http.delete(f"/tasks/{long['id']}").status_code == 204


def test_running_task_survives_a_server_restart(
    server: EmbeddedServer,
    http: httpx.Client,
    project: str,
    app_id: str,
    reads: list[str],
    ssl_context: ssl.SSLContext,
) -> None:
    """Last in the module: it closes the shared client (an idle keep-alive connection delays shutdown)."""
    task = http.post(
        "/tasks",
        params={"action": "run"},
        json={
            "project": project,
            "app": app_id,
            "inputs": {"reads": reads[:1]},
            "execution_settings": {"fake_duration": 3},
        },
    ).json()
    deadline = time.monotonic() + 10
    while http.get(f"/tasks/{task['id']}").json()["status"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    http.close()
    server.restart()
    with httpx.Client(
        base_url=server.url, verify=ssl_context, headers={"X-SBG-Auth-Token": server.token}, timeout=60
    ) as fresh:
        done = wait(fresh, task["id"])
    assert done["status"] == "COMPLETED" and done["outputs"]["result"]["name"] == "result.txt"
