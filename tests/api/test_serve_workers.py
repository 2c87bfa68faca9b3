"""``serve --workers 2``: two API processes share the port, the dispatcher runs in the parent.

Creations from both processes and the dispatcher's writes meet at one database (SQLite's writers
queue on a file lock), and a parent killed with SIGKILL takes its API processes with it; the
restarted server finds every task in a true state. (The wake-up datagrams: tests/test_wakeup.py.)
"""

from __future__ import annotations

import os
import signal
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.taskapps import add_file, install_app, wait_task

SERVER_WORKERS = 2


def api_processes(server: EmbeddedServer) -> list[psutil.Process]:
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children()
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


@pytest.fixture(scope="module")
def setup(server: EmbeddedServer, http: httpx.Client) -> dict[str, Any]:
    project = http.post("/projects", json={"name": "workers"}).json()["id"]
    app = install_app(server, project, "tool")
    reads = [add_file(server, project, "w.fastq")]
    return {"project": project, "app": app, "reads": reads}


def task_body(setup: dict[str, Any]) -> dict[str, Any]:
    return {"project": setup["project"], "app": setup["app"], "inputs": {"reads": setup["reads"]}}


def test_the_api_runs_in_two_child_processes(server: EmbeddedServer) -> None:
    assert len(api_processes(server)) == 2


def test_concurrent_creations_through_both_processes_all_run(
    server: EmbeddedServer, http: httpx.Client, setup: dict[str, Any]
) -> None:
    def create(i: int) -> httpx.Response:
        body = {
            "project": setup["project"],
            "app": setup["app"],
            "name": f"w{i}",
            "inputs": {"reads": setup["reads"]},
        }
        return http.post("/tasks", params={"action": "run"}, json=body)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(create, range(40)))
    assert [a.status_code for a in answers] == [201] * 40, [a.text for a in answers if a.status_code != 201]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 40
    ended = [wait_task(http, task_id) for task_id in ids]
    assert {t["status"] for t in ended} == {"COMPLETED"}
    listed = http.get("/tasks", params={"project": setup["project"], "limit": 1})
    assert listed.headers["x-total-matching-query"] == "40"


def test_killing_the_parent_ends_the_api_processes_and_a_restart_recovers(
    server: EmbeddedServer, http: httpx.Client, setup: dict[str, Any], ssl_context: ssl.SSLContext
) -> None:
    body = {**task_body(setup), "name": "in flight", "execution_settings": {"fake_duration": 2}}
    task = http.post("/tasks", params={"action": "run"}, json=body).json()
    deadline = time.monotonic() + 20
    while http.get(f"/tasks/{task['id']}").json()["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    children = api_processes(server)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "API processes kept serving after their parent died"
    server.restart()
    headers = {"X-SBG-Auth-Token": server.token}
    with httpx.Client(base_url=server.url, verify=ssl_context, headers=headers) as fresh:
        assert wait_task(fresh, task["id"], timeout=30)["status"] == "COMPLETED"
    assert len(api_processes(server)) == 2
