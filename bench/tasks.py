"""Task throughput on the fake engine: 1,000 single tasks created and run, then a 10,000-item batch.

Prints creations/s, the time until everything is COMPLETED, how long the batch took to expand into
children, the p99 of ``GET /tasks/{id}`` while the load runs (against an idle baseline measured first),
and the server's RSS. Ends with one JSON line. Scale with BENCH_TASKS, BENCH_BATCH, BENCH_CLIENTS.
"""

from __future__ import annotations

import json
import os
import random
import ssl
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.taskapps import install_app

from bridgehead.db.base import new_file_id, utcnow
from bridgehead.db.models import File, Project
from bridgehead.embedded import EmbeddedServer

TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
BATCH = int(os.environ.get("BENCH_BATCH", "10000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
DRAFTS = int(os.environ.get("BENCH_DRAFTS", "200"))


def add_files(server: EmbeddedServer, project: str, count: int) -> list[str]:
    """``count`` small input files inserted in one statement (their content is never read by the fake)."""
    owner, slug = project.split("/")
    engine = create_engine(server.resolved_database_url, poolclass=NullPool)
    ids = [new_file_id() for _ in range(count)]
    with Session(engine) as s, s.begin():
        p = s.scalar(select(Project).where(Project.owner == owner, Project.slug == slug))
        assert p is not None
        now = utcnow()
        rows: list[dict[str, Any]] = [
            {
                "id": fid,
                "project_id": p.id,
                "parent_id": p.root_folder,
                "name": f"r{i}.fastq",
                "type": "FILE",
                "size": 0,
                "blob_key": None,
                "origin_task": None,
                "storage": {"type": "PLATFORM"},
                "metadata_": {},
                "tags": [],
                "created_on": now,
                "modified_on": now,
            }
            for i, fid in enumerate(ids)
        ]
        for start in range(0, len(rows), 1000):
            s.execute(insert(File), rows[start : start + 1000])
    engine.dispose()
    return ids


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Prober(threading.Thread):
    """GETs random known tasks back to back and records each latency (ms)."""

    def __init__(self, client: httpx.Client, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.client, self.ids, self.latencies = client, ids, []  # type: ignore[var-annotated]
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.ids:
                time.sleep(0.01)
                continue
            t0 = time.perf_counter()
            try:
                self.client.get(f"/tasks/{random.choice(self.ids)}")
            except httpx.HTTPError:
                return  # the server went away (interrupted run)
            self.latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.005)


def count(client: httpx.Client, **params: Any) -> int:
    resp = client.get("/tasks", params={**params, "limit": 1})
    return int(resp.headers["x-total-matching-query"])


def wait_done(client: httpx.Client, timeout: float, **params: Any) -> float:
    """Seconds until no task matching ``params`` is QUEUED/RUNNING."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if count(client, status=["QUEUED", "RUNNING"], **params) == 0:
            return time.perf_counter() - t0
        time.sleep(0.5)
    raise RuntimeError(f"tasks still running after {timeout} s")


def main() -> None:
    server = EmbeddedServer(engine="fake").start()
    try:
        ctx = ssl.create_default_context(cafile=server.ca_file)
        limits = httpx.Limits(max_connections=CLIENTS + 2)
        client = httpx.Client(
            base_url=server.url,
            verify=ctx,
            headers={"X-SBG-Auth-Token": server.token},
            timeout=120,
            limits=limits,
        )
        project = client.post("/projects", json={"name": "bench"}).json()["id"]
        app = install_app(server, project, "tool")
        inputs = add_files(server, project, BATCH + 1)

        probe_client = httpx.Client(
            base_url=server.url, verify=ctx, headers={"X-SBG-Auth-Token": server.token}
        )
        seed = client.post(
            "/tasks", json={"project": project, "app": app, "inputs": {"reads": inputs[:1]}}
        ).json()
        idle = []
        for _ in range(200):
            t0 = time.perf_counter()
            probe_client.get(f"/tasks/{seed['id']}")
            idle.append((time.perf_counter() - t0) * 1000)
        idle_p99 = p99(idle)
        print(f"idle GET /tasks/{{id}}: p50 {statistics.median(idle):.1f} ms, p99 {idle_p99:.1f} ms")

        ids: list[str] = [seed["id"]]
        prober = Prober(probe_client, ids)
        prober.start()

        def draft(i: int) -> None:
            resp = client.post(
                "/tasks",
                json={"project": project, "app": app, "name": f"d{i}", "inputs": {"reads": [inputs[0]]}},
            )
            assert resp.status_code == 201, resp.text

        # Baseline: drafts only (nothing for the dispatcher to do), so the ratio shows what running costs.
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(draft, range(DRAFTS)))
        draft_rate = DRAFTS / (time.perf_counter() - t0)
        print(f"baseline: {DRAFTS} drafts at {draft_rate:.0f} tasks/s (no dispatcher work)")

        def create(i: int) -> str:
            resp = client.post(
                "/tasks",
                params={"action": "run"},
                json={"project": project, "app": app, "name": f"t{i}", "inputs": {"reads": [inputs[0]]}},
            )
            assert resp.status_code == 201, resp.text
            task_id: str = resp.json()["id"]
            ids.append(task_id)
            return task_id

        t0 = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(create, range(TASKS)))
        create_s = time.perf_counter() - t0
        rate = TASKS / create_s
        print(f"created and queued {TASKS} tasks in {create_s:.1f} s: {rate:.0f} tasks/s ({CLIENTS} clients)")
        singles_done = wait_done(client, 1800, project=project) + create_s
        print(f"all {TASKS} single tasks finished {singles_done:.1f} s after the first request")
        completed = count(client, project=project, status="COMPLETED", batch="false")
        print(f"  COMPLETED: {completed}")

        body = {
            "project": project,
            "app": app,
            "name": "big batch",
            "inputs": {"reads": inputs[1:]},
            "batch_input": "reads",
            "batch_by": {"type": "ITEM"},
        }
        t0 = time.perf_counter()
        parent = client.post("/tasks", json=body).json()
        draft_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.post(f"/tasks/{parent['id']}/actions/run")
        while count(client, parent=parent["id"]) < BATCH:
            time.sleep(0.1)
        expand_s = time.perf_counter() - t0
        print(
            f"batch of {BATCH}: draft created in {draft_s:.2f} s; children created {expand_s:.2f} s after run"
        )
        while client.get(f"/tasks/{parent['id']}").json()["status"] not in ("COMPLETED", "FAILED", "ABORTED"):
            if time.perf_counter() - t0 > 7200:
                raise RuntimeError("the batch did not finish within 2 hours")
            time.sleep(0.5)
        batch_done = time.perf_counter() - t0
        final = client.get(f"/tasks/{parent['id']}").json()
        print(
            f"batch finished {batch_done:.1f} s after run: parent {final['status']}, "
            f"children completed {final['execution_status']['completed']}"
        )
        prober.stop.set()
        prober.join()
        load_p99 = p99(prober.latencies)
        rss = rss_mib(server.proc.pid) if server.proc else 0.0
        print(
            f"GET /tasks/{{id}} under load: {len(prober.latencies)} requests, p99 {load_p99:.1f} ms "
            f"({load_p99 / idle_p99:.1f}x idle)"
        )
        print(f"server RSS {rss:.0f} MiB; machine load average {os.getloadavg()[0]:.1f} (shared cores)")
        print(
            json.dumps(
                {
                    "bench": "tasks",
                    "tasks": TASKS,
                    "creations_per_s": round(rate, 1),
                    "draft_creations_per_s": round(draft_rate, 1),
                    "run_vs_draft_creation": round(rate / draft_rate, 2),
                    "singles_all_completed_s": round(singles_done, 1),
                    "singles_completed": completed,
                    "batch_items": BATCH,
                    "batch_children_created_s": round(expand_s, 2),
                    "batch_all_completed_s": round(batch_done, 1),
                    "batch_status": final["status"],
                    "get_p99_ms_idle": round(idle_p99, 1),
                    "get_p99_ms_load": round(load_p99, 1),
                    "get_p99_load_vs_idle": round(load_p99 / idle_p99, 2),
                    "server_rss_mib": round(rss, 1),
                    "load_average_1m": round(os.getloadavg()[0], 1),
                }
            )
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
