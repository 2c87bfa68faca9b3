"""Real execution through the API: the local engine behind the dispatcher, with a real database.

Everything goes over HTTP (the official client or plain httpx); files come from the server's blob
store; processes are checked with ``ps``. The last test kills the server with SIGKILL.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer, cli
from tests.support.taskapps import add_file

ENGINE = "local"
SERVER_ENV = {"BRIDGEHEAD_MAX_CORES": "2"}
TERMINAL = ("COMPLETED", "FAILED", "ABORTED")


def tool(command: list[str], inputs: Any = None, outputs: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "cwlVersion": "v1.2",
        "class": "CommandLineTool",
        "baseCommand": command,
        "inputs": inputs or [],
        "outputs": outputs or [],
        **extra,
    }


WC = tool(
    ["wc", "-l"],
    inputs={"infile": {"type": "File", "inputBinding": {"position": 1}}},
    outputs={"count": {"type": "stdout"}, "err": {"type": "stderr"}},
    stdout="count.txt",
    stderr="err.txt",
)
FAIL = tool(["sh", "-c", "echo tool says no >&2; exit 3"])
WF = {
    "cwlVersion": "v1.2",
    "class": "Workflow",
    "inputs": {"infile": "File"},
    "outputs": {"lines": {"type": "File", "outputSource": "count/out"}},
    "steps": {
        "sort": {
            "in": {"f": "infile"},
            "out": ["out"],
            "run": tool(
                ["sort"],
                inputs={"f": {"type": "File", "inputBinding": {"position": 1}}},
                outputs={"out": "stdout"},
                stdout="sorted.txt",
            ),
        },
        "count": {
            "in": {"f": "sort/out"},
            "out": ["out"],
            "run": tool(
                ["wc", "-l"],
                inputs={"f": {"type": "File", "inputBinding": {"position": 1}}},
                outputs={"out": "stdout"},
                stdout="count.txt",
            ),
        },
    },
}


@pytest.fixture(scope="module")
def project(http: httpx.Client) -> str:
    resp = http.post("/projects", json={"name": "execution"})
    assert resp.status_code in (200, 201), resp.text
    return str(resp.json()["id"])


def install(http: httpx.Client, project: str, name: str, raw: dict[str, Any]) -> str:
    resp = http.post(f"/apps/{project}/{name}/raw", json=raw)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["sbg:id"])


def run(http: httpx.Client, project: str, app: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = http.post(
        "/tasks",
        params={"action": "run"},
        json={"project": project, "app": app, "name": app, "inputs": inputs or {}},
    )
    assert resp.status_code in (200, 201), resp.text
    task = resp.json()
    assert not task["errors"], task["errors"]
    return dict(task)


def wait(
    http: httpx.Client, task_id: str, timeout: float = 60, until: tuple[str, ...] = TERMINAL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = http.get(f"/tasks/{task_id}").json()
        if task["status"] in until:
            return dict(task)
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still {task['status']}: {task['execution_status']}")


def content(http: httpx.Client, file_id: str) -> str:
    url = http.get(f"/files/{file_id}/download_info").json()["url"]
    resp = http.get(url, headers={"X-SBG-Auth-Token": ""})  # the signed URL needs no token
    assert resp.status_code == 200, resp.text
    return resp.text


def file_input(server: EmbeddedServer, project: str, name: str, data: bytes) -> dict[str, str]:
    return {"class": "File", "path": add_file(server, project, name, data)}


def test_tool_outputs_logs_and_details(server: EmbeddedServer, http: httpx.Client, project: str) -> None:
    app = install(http, project, "wc", WC)
    task = run(http, project, app, {"infile": file_input(server, project, "five.txt", b"a\nb\nc\nd\ne\n")})
    task = wait(http, task["id"])
    assert task["status"] == "COMPLETED", task["execution_status"]
    count = task["outputs"]["count"]
    assert count["class"] == "File" and count["name"] == "count.txt"
    assert content(http, count["path"]).split()[0] == "5"
    assert http.get(f"/files/{count['path']}").json()["origin"]["task"] == task["id"]
    es = task["execution_status"]
    assert (es["steps_completed"], es["steps_total"]) == (1, 1)
    assert task["start_time"] and task["end_time"]
    details = http.get(f"/tasks/{task['id']}/execution_details").json()
    [job] = details["jobs"]
    assert job["status"] == "DONE" and "wc -l" in job["command_line"]
    assert job["start_time"] and job["end_time"]
    logs = job["logs"]
    assert set(logs) >= {"stdout", "stderr"}


def test_two_step_workflow_counts_steps(server: EmbeddedServer, http: httpx.Client, project: str) -> None:
    app = install(http, project, "sortcount", WF)
    task = run(http, project, app, {"infile": file_input(server, project, "wf.txt", b"c\nb\na\n")})
    task = wait(http, task["id"])
    assert task["status"] == "COMPLETED", task["execution_status"]
    assert task["execution_status"]["steps_completed"] == 2
    assert task["execution_status"]["steps_total"] == 2
    assert content(http, task["outputs"]["lines"]["path"]).split()[0] == "3"
    details = http.get(f"/tasks/{task['id']}/execution_details").json()
    assert [j["name"] for j in details["jobs"]] == ["sort", "count"]


def test_file_format_reaches_the_tool(server: EmbeddedServer, http: httpx.Client, project: str) -> None:
    """A File input's CWL ``format`` is kept from the request to cwltool, which checks it against the
    tool's declared format (a File without one fails that check)."""
    fasta = "http://edamontology.org/format_1929"
    raw = tool(
        ["wc", "-c"],
        inputs={"seq": {"type": "File", "format": fasta, "inputBinding": {"position": 1}}},
        outputs={"out": {"type": "stdout"}},
        stdout="n.txt",
    )
    app = install(http, project, "fmt", raw)
    given = {**file_input(server, project, "s.fa", b">a\nACGT\n"), "format": fasta}
    task = run(http, project, app, {"seq": given})
    assert task["inputs"]["seq"]["format"] == fasta
    task = wait(http, task["id"])
    assert task["status"] == "COMPLETED", task["execution_status"]
    assert content(http, task["outputs"]["out"]["path"]).split()[0] == "8"


def log_text(http: httpx.Client, job: dict[str, Any], name: str) -> str:
    ref = job["logs"][name]  # the platform links each log to its file's download_info
    assert ref.startswith(str(http.base_url)) and ref.endswith("/download_info")
    url = http.get(ref).json()["url"]
    return http.get(url, headers={"X-SBG-Auth-Token": ""}).text


def test_failing_tool_fails_with_exit_code_and_stderr(http: httpx.Client, project: str) -> None:
    task = wait(http, run(http, project, install(http, project, "fails", FAIL))["id"])
    assert task["status"] == "FAILED"
    assert "exited with code 3" in task["execution_status"]["message"]
    [job] = http.get(f"/tasks/{task['id']}/execution_details").json()["jobs"]
    assert job["status"] == "FAILED"
    assert "tool says no" in log_text(http, job, "stderr")
    assert "exited with status: 3" in log_text(http, job, "engine.log")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (tool(["no-such-command-h4"]), "no-such-command-h4"),
        (
            tool(["true"], outputs={"res": {"type": "File", "outputBinding": {"glob": "nothing-here.txt"}}}),
            "nothing-here.txt",
        ),
    ],
)
def test_bad_tools_fail_clearly(http: httpx.Client, project: str, raw: dict[str, Any], says: str) -> None:
    task = wait(http, run(http, project, install(http, project, f"bad{abs(hash(says)) % 1000}", raw))["id"])
    assert task["status"] == "FAILED"
    assert says in task["execution_status"]["message"]


@pytest.mark.parametrize(
    ("resources", "says"),
    [({"coresMin": 64}, "needs 64 cores"), ({"ramMin": 64 * 1024 * 1024}, f"{64 * 1024 * 1024} MiB")],
)
def test_oversized_requests_fail_instead_of_waiting(
    http: httpx.Client, project: str, resources: dict[str, int], says: str
) -> None:
    raw = tool(["true"], requirements=[{"class": "ResourceRequirement", **resources}])
    app = install(http, project, f"huge{len(says)}", raw)
    task = wait(http, run(http, project, app)["id"], timeout=20)
    assert task["status"] == "FAILED"
    assert says in task["execution_status"]["message"]


def processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if marker in line and not line.startswith("Z")]


def group_of(command: str) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pgid=,args="], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if line.split(None, 1)[1] == command}


def test_abort_running_task_leaves_no_process(http: httpx.Client, project: str) -> None:
    app = install(http, project, "sleeper", tool(["sh", "-c", "sleep 71.25 & sleep 71.5; wait"]))
    task = wait(http, run(http, project, app)["id"], until=("RUNNING",))
    deadline = time.monotonic() + 20
    while not processes("sleep 71.5") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes("sleep 71.25") and processes("sleep 71.5")
    resp = http.post(f"/tasks/{task['id']}/actions/abort", json=None)
    assert resp.status_code == 200, resp.text
    task = wait(http, task["id"], timeout=10)
    assert task["status"] == "ABORTED"
    assert processes("sleep 71.") == []


def test_input_deleted_after_queueing_fails_with_name(
    server: EmbeddedServer, http: httpx.Client, project: str
) -> None:
    """A 2-core blocker fills the engine, so the second task waits QUEUED while its input disappears."""
    blocker_app = install(
        http,
        project,
        "blocker",
        tool(["sleep", "30.5"], requirements=[{"class": "ResourceRequirement", "coresMin": 2}]),
    )
    blocker = wait(http, run(http, project, blocker_app)["id"], until=("RUNNING",))
    victim_file = file_input(server, project, "doomed.txt", b"x\n")
    victim = run(http, project, install(http, project, "wc2", WC), {"infile": victim_file})
    time.sleep(0.5)
    assert http.get(f"/tasks/{victim['id']}").json()["status"] == "QUEUED"
    assert http.delete(f"/files/{victim_file['path']}").status_code == 204
    assert http.post(f"/tasks/{blocker['id']}/actions/abort", json=None).status_code == 200
    victim = wait(http, victim["id"])
    assert victim["status"] == "FAILED"
    assert "doomed.txt" in victim["execution_status"]["message"]


def test_memoization_reuses_identical_job(server: EmbeddedServer, http: httpx.Client, project: str) -> None:
    app = install(
        http,
        project,
        "memo",
        tool(
            ["sh", "-c", 'wc -l < "$0" > n.txt; date +%s%N > stamp.txt'],
            arguments=[{"valueFrom": "$(inputs.f.path)"}],
            inputs={"f": "File"},
            outputs={
                "n": {"type": "File", "outputBinding": {"glob": "n.txt"}},
                "stamp": {"type": "File", "outputBinding": {"glob": "stamp.txt"}},
            },
            requirements=[{"class": "InlineJavascriptRequirement"}],
        ),
    )

    def go(data: bytes, memoize: bool = True) -> dict[str, Any]:
        body = {
            "project": project,
            "app": app,
            "name": "memo",
            "execution_settings": {"use_memoization": memoize},
            "inputs": {"f": file_input(server, project, "m.txt", data)},
        }
        task = http.post("/tasks", params={"action": "run"}, json=body).json()
        return wait(http, task["id"])

    first = go(b"1\n2\n")
    assert first["status"] == "COMPLETED", first["execution_status"]
    assert "memoized_from" not in first["execution_status"]
    second = go(b"1\n2\n")  # another file, same content and name: the same job
    assert second["status"] == "COMPLETED"
    assert second["execution_status"]["message"] == f"Reused outputs of task {first['id']}"
    assert second["execution_status"]["memoized_from"] == first["id"]
    assert http.get(f"/tasks/{second['id']}/execution_details").json()["jobs"] == []
    for port in ("n", "stamp"):
        assert second["outputs"][port]["path"] != first["outputs"][port]["path"]
        assert content(http, second["outputs"][port]["path"]) == content(http, first["outputs"][port]["path"])
        assert http.get(f"/files/{second['outputs'][port]['path']}").json()["origin"]["task"] == second["id"]
    other = go(b"1\n2\n3\n")  # different content: runs for real
    assert "memoized_from" not in other["execution_status"]
    assert content(http, other["outputs"]["n"]["path"]).strip() == "3"
    off = go(b"1\n2\n", memoize=False)  # switched off: runs again
    assert "memoized_from" not in off["execution_status"]
    assert content(http, off["outputs"]["stamp"]["path"]) != content(http, first["outputs"]["stamp"]["path"])


def test_bundle_by_api_and_cli(
    server: EmbeddedServer, http: httpx.Client, project: str, tmp_path: Path
) -> None:
    task = wait(http, run(http, project, install(http, project, "fails-b", FAIL))["id"])
    resp = http.get(f"/tasks/{task['id']}/bundle")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
        names = set(tar.getnames())
        prefix = f"task-{task['id']}"
        assert {f"{prefix}/{n}" for n in ("task.json", "app.cwl.json", "inputs.json")} <= names
        assert f"{prefix}/run/engine.log" in names and f"{prefix}/run/result.json" in names
        assert json.loads(tar.extractfile(f"{prefix}/task.json").read())["status"] == "FAILED"  # type: ignore[union-attr]
        assert (
            json.loads(tar.extractfile(f"{prefix}/app.cwl.json").read())["baseCommand"] == FAIL["baseCommand"]
        )  # type: ignore[union-attr]
        stderr = [n for n in names if n.endswith(".stderr")]
        assert stderr and all(b"tool says no" in tar.extractfile(n).read() for n in stderr)  # type: ignore[union-attr]
    assert http.get("/tasks/00000000-0000-0000-0000-000000000000/bundle").json()["code"] == 7002
    out = tmp_path / "b.tar.gz"
    cli("task-bundle", task["id"], "--output", str(out), env=server.env())
    with tarfile.open(out, mode="r:gz") as tar:
        assert f"task-{task['id']}/run/engine.log" in tar.getnames()


def test_server_kill9_then_restart_recovers(server: EmbeddedServer, http: httpx.Client, project: str) -> None:
    slow = install(
        http,
        project,
        "slow",
        tool(
            ["sh", "-c", "sleep 2.5; echo survived > out.txt"],
            outputs={"out": {"type": "File", "outputBinding": {"glob": "out.txt"}}},
        ),
    )
    lost = install(http, project, "lost", tool(["sleep", "33.25"]))
    survivor = wait(http, run(http, project, slow)["id"], until=("RUNNING",))
    victim = wait(http, run(http, project, lost)["id"], until=("RUNNING",))
    deadline = time.monotonic() + 20
    while not processes("sleep 33.25") and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL: no shutdown code runs
    for pgid in group_of("sleep 33.25"):  # and this task's runner dies without leaving a result
        os.killpg(pgid, signal.SIGKILL)
    server.restart()
    survivor = wait(http, survivor["id"], timeout=60)
    assert survivor["status"] == "COMPLETED", survivor["execution_status"]
    assert content(http, survivor["outputs"]["out"]["path"]) == "survived\n"
    victim = wait(http, victim["id"], timeout=60)
    assert victim["status"] == "FAILED"
    assert victim["execution_status"]["message"]
