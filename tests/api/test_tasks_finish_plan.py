"""Finishing runs planned outside the write lock (``execution.plan_finish`` / ``apply_finish``).

The plan is written later, in its own transaction: it must give each task exactly what the careful
one-by-one ``finish`` gives, and it must not write a task whose row changed in between (an abort)
or whose output folder name was taken meanwhile. The tasks here are marked RUNNING and claimed by
another worker, so the live server's dispatcher leaves them to the test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from bridgehead.config import Settings
from bridgehead.db.models.tasks import Task
from bridgehead.db.session import Database
from bridgehead.domain.tasks import execution, pricing
from bridgehead.embedded import EmbeddedServer
from bridgehead.engines.base import JobInfo, RunStatus
from bridgehead.storage.blobs import store_for
from tests.support.dbstate import assert_same_pairs
from tests.support.taskapps import add_file, project_and_app_fixtures

PRICES = pricing.PriceTable(1.0, 0.0)


project, app_id = project_and_app_fixtures("planned", "plan")


@pytest.fixture(scope="module")
def db(server: EmbeddedServer) -> Iterator[Database]:
    database = Database(server.resolved_database_url)
    yield database
    database.dispose()


def running_tasks(
    server: EmbeddedServer, http: httpx.Client, db: Database, project: str, app_id: str, names: list[str]
) -> list[str]:
    """Drafts made RUNNING under another worker's claim: what a run looks like when it ends."""
    reads = [add_file(server, project, "in.fastq")]
    ids = []
    for name in names:
        resp = http.post(
            "/tasks", json={"project": project, "app": app_id, "name": name, "inputs": {"reads": reads}}
        )
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    with db.write() as s:
        s.execute(
            update(Task)
            .where(Task.id.in_(ids))
            .values(
                status="RUNNING",
                claimed_by="another-worker",
                engine="fake",
                execution_status={"message": "Running"},
            )
        )
    return ids


def run_output(root: Path) -> RunStatus:
    """A completed run with logs, two outputs of one basename and a nested Directory output."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "a").mkdir(exist_ok=True)
    (root / "b").mkdir(exist_ok=True)
    (root / "a" / "same.txt").write_text("first\n")
    (root / "b" / "same.txt").write_text("second\n")
    (root / "d" / "inner").mkdir(parents=True, exist_ok=True)
    (root / "d" / "top.txt").write_text("top\n")
    (root / "d" / "inner" / "deep.txt").write_text("deep\n")
    (root / "stdout.log").write_text("out\n")
    (root / "stderr.log").write_text("")
    return RunStatus(
        "completed",
        outputs={
            "result": {"class": "File", "location": f"file://{root / 'a' / 'same.txt'}"},
            "summary": {"class": "File", "path": str(root / "b" / "same.txt")},
            "count": 3,
            "tree": {"class": "Directory", "location": f"file://{root / 'd'}"},
        },
        steps_completed=1,
        steps_total=1,
        jobs=[
            JobInfo(
                "main",
                "COMPLETED",
                start_time=1.0,
                end_time=2.0,
                logs={"stdout.log": root / "stdout.log", "stderr.log": root / "stderr.log"},
            )
        ],
        started_at=1_700_000_000.0,
    )


def listing(http: httpx.Client, parent: str) -> dict[str, dict[str, Any]]:
    resp = http.get("/files", params={"parent": parent, "limit": "100"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert int(resp.headers.get("x-total-matching-query", len(body["items"]))) == len(body["items"])
    return {f["name"]: f for f in body["items"]}


def tree(http: httpx.Client, folder: str) -> Any:
    """A folder's content as nested (name, type, size, origin task) tuples."""
    out = []
    for name, f in sorted(listing(http, folder).items()):
        below = tree(http, f["id"]) if f["type"] == "folder" else None
        out.append((name, f["type"], f.get("size"), (f.get("origin") or {}).get("task"), below))
    return out


def anonymous(nodes: Any) -> Any:
    """A ``tree`` with each origin task replaced by whether there is one."""
    return [(n, ty, sz, o is not None, anonymous(b) if b else b) for n, ty, sz, o, b in nodes]


def comparable(task: dict[str, Any]) -> dict[str, Any]:
    """What must agree between two tasks finished from the same run by the two paths."""
    outs = task["outputs"]
    return {
        "status": task["status"],
        "message": task["execution_status"]["message"],
        "steps": (task["execution_status"]["steps_completed"], task["execution_status"]["steps_total"]),
        "keys": sorted(task["execution_status"]),
        "outputs": {
            "result": outs["result"]["name"],
            "summary": outs["summary"]["name"],
            "count": outs["count"],
            "tree": outs["tree"]["name"],
        },
        "price_currency": task["price"]["currency"],
        "jobs": [(j["name"], j["status"], sorted(j["logs"])) for j in task["jobs"]]
        if "jobs" in task
        else None,
    }


def test_a_planned_finish_writes_what_the_careful_finish_writes(
    server: EmbeddedServer, http: httpx.Client, db: Database, project: str, app_id: str, tmp_path: Path
) -> None:
    planned, careful = running_tasks(server, http, db, project, app_id, ["same", "same"])
    blobs = store_for(Settings(data_dir=server.data_path))
    with db.read() as s:
        plan = execution.plan_finish(s, blobs, {planned: run_output(tmp_path / "p")}, PRICES)
    assert plan.left == [] and list(plan.updates) == [planned]
    with db.write() as s:
        assert execution.apply_finish(s, blobs, plan) == {planned}
    with db.write() as s:
        task = s.get(Task, careful)
        assert task is not None
        keep = execution.preload(s, [task])  # noqa: F841
        execution.finish(s, blobs, task, run_output(tmp_path / "c"), PRICES)

    got = {tid: http.get(f"/tasks/{tid}").json() for tid in (planned, careful)}
    assert got[planned]["status"] == "COMPLETED", got[planned]["execution_status"]
    assert comparable(got[planned]) == comparable(got[careful])
    outs = got[planned]["outputs"]
    assert (outs["result"]["name"], outs["summary"]["name"]) == ("same.txt", "_1_same.txt")
    assert float(got[planned]["price"]["amount"]) > 0  # priced from the run's times, as finish does
    roots = listing(http, project_root(http, project))
    trees = {}
    for tid in (planned, careful):
        folder = roots[f"same_{tid[:8]}"]
        inside = listing(http, folder["id"])
        assert inside["same.txt"]["id"] == got[tid]["outputs"]["result"]["path"]
        trees[tid] = tree(http, folder["id"])
    assert anonymous(trees[planned]) == anonymous(trees[careful])
    names = [n for n, *_ in trees[planned]]
    assert names == [".logs", "_1_same.txt", "d", "same.txt"]
    logs = dict((n, b) for n, _, _, _, b in trees[planned])[".logs"]
    assert [(n, o) for n, _, _, o, _ in logs] == [("main.stderr.log", planned), ("main.stdout.log", planned)]
    details = http.get(f"/tasks/{planned}/execution_details").json()
    assert set(details["jobs"][0]["logs"]) == {"stdout.log", "stderr.log"}
    assert_same_pairs(
        server.resolved_database_url,
        "SELECT folder_id, children FROM folder_counts WHERE children > 0",
        "SELECT parent_id, COUNT(*) FROM files WHERE parent_id IS NOT NULL GROUP BY parent_id",
    )


def project_root(http: httpx.Client, project: str) -> str:
    return str(http.get(f"/projects/{project}").json()["root_folder"])


def test_a_task_aborted_or_a_name_taken_after_planning_is_left_to_the_careful_path(
    server: EmbeddedServer, http: httpx.Client, db: Database, project: str, app_id: str, tmp_path: Path
) -> None:
    ok, aborted, clashed = running_tasks(server, http, db, project, app_id, ["ok", "ab", "cl"])
    blobs = store_for(Settings(data_dir=server.data_path))
    statuses = {tid: run_output(tmp_path / tid) for tid in (ok, aborted, clashed)}
    with db.read() as s:
        plan = execution.plan_finish(s, blobs, statuses, PRICES)
    assert set(plan.updates) == {ok, aborted, clashed}
    # Meanwhile: an abort request arrives for one, and a folder takes the other's output folder name.
    with db.write() as s:
        s.execute(update(Task).where(Task.id == aborted).values(status="ABORTING", abort_requested=True))
    made = http.post("/files", json={"name": f"cl_{clashed[:8]}", "project": project, "type": "folder"})
    assert made.status_code == 201, made.text
    with db.write() as s:
        assert execution.apply_finish(s, blobs, plan) == {ok}
    assert http.get(f"/tasks/{ok}").json()["status"] == "COMPLETED"
    assert http.get(f"/tasks/{aborted}").json()["status"] == "ABORTING"
    assert http.get(f"/tasks/{clashed}").json()["status"] == "RUNNING"
    roots = listing(http, project_root(http, project))
    assert f"ab_{aborted[:8]}" not in roots  # nothing of the unwritten tasks was written
    assert listing(http, made.json()["id"]) == {}
    with db.read() as s:
        again = execution.plan_finish(
            s, blobs, {aborted: statuses[aborted], clashed: statuses[clashed]}, PRICES
        )
    assert sorted(again.left) == sorted([aborted, clashed]) and not again.updates


def test_a_run_that_cannot_be_planned_is_left_to_the_careful_path_alone(
    server: EmbeddedServer, http: httpx.Client, db: Database, project: str, app_id: str, tmp_path: Path
) -> None:
    good, bad = running_tasks(server, http, db, project, app_id, ["good", "bad"])
    blobs = store_for(Settings(data_dir=server.data_path))
    broken = run_output(tmp_path / "b")
    assert broken.outputs is not None
    broken.outputs["result"]["basename"] = "no/slashes"  # a name no file may have
    with db.read() as s:
        plan = execution.plan_finish(s, blobs, {good: run_output(tmp_path / "g"), bad: broken}, PRICES)
    assert plan.left == [bad] and set(plan.updates) == {good}
    assert bad not in plan.rows and bad not in plan.folders


def test_content_collected_after_planning_sends_the_task_to_the_careful_path(
    server: EmbeddedServer, http: httpx.Client, db: Database, project: str, app_id: str, tmp_path: Path
) -> None:
    (task,) = running_tasks(server, http, db, project, app_id, ["collected"])
    blobs = store_for(Settings(data_dir=server.data_path))
    status = run_output(tmp_path / "x")
    (tmp_path / "x" / "stdout.log").write_text("content no other file has\n")
    with db.read() as s:
        plan = execution.plan_finish(s, blobs, {task: status}, PRICES)
    unique = hashlib.sha256(b"content no other file has\n").hexdigest()
    assert unique in {r["blob_key"] for r in plan.rows[task]}
    blobs.path(unique).unlink()  # what deleting the last other file of that content does meanwhile
    with db.write() as s:
        assert execution.apply_finish(s, blobs, plan) == set()
    assert http.get(f"/tasks/{task}").json()["status"] == "RUNNING"
