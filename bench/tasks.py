"""Task throughput on the fake engine: 1,000 single tasks created and run, then a 10,000-item batch.

Prints creations/s, the time until everything is COMPLETED, how long the batch took to expand into
children, the p99 of ``GET /tasks/{id}`` while the load runs (against an idle baseline measured first),
and the server's RSS. Ends with one JSON line. Scale with BENCH_TASKS, BENCH_BATCH, BENCH_CLIENTS.

When ``wrk`` is installed, the creations are POSTed by wrk (a C load generator, with a Lua script that
names every task differently and stops after exactly the requested number of answers): eight Python
client threads on two shared cores are themselves the ceiling well below the server's. Otherwise Python
threads post them. A second, light Python client probes ``GET /tasks/{id}`` throughout.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
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
# API processes of the server (`serve --workers`); the dispatcher then runs in the parent process.
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
USE_WRK = shutil.which("wrk") is not None and os.environ.get("BENCH_WRK", "1") != "0"

# One Lua state per wrk thread: each names its tasks "<prefix><thread>-<n>" and stops the thread after
# its share of answers, so that exactly the requested number of requests is timed.
WRK_SCRIPT = """
local threads, counter = {}, 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local sent, answered = 0, 0
failed = 0
function request()
  sent = sent + 1
  return wrk.format("POST", PATH, nil, string.format(BODY, tid, sent))
end
function response(status, headers, body)
  answered = answered + 1
  if status ~= 201 then failed = failed + 1 end
  if answered >= LIMIT then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("failed") end
  io.write(string.format("FAILED %d\\n", bad))
end
"""


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
    """Resident memory of the server: its process and every child (the API processes of --workers)."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 2**20


PROBES_PER_S = float(os.environ.get("BENCH_PROBES_PER_S", "20"))


class Prober(threading.Thread):
    """GETs a random known task BENCH_PROBES_PER_S times a second and records each latency (ms).

    Paced, so that it measures the load rather than adds to it: back to back (as before) it sent
    100-150 GETs/s, a quarter of both cores with its own TLS client, and creations/s fell with it.
    """

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
            elapsed = time.perf_counter() - t0
            self.latencies.append(elapsed * 1000)
            self.stop.wait(max(0.0, 1 / PROBES_PER_S - elapsed))


def wrk_post(
    server: EmbeddedServer, path: str, body: str, total: int, connections: int, created: Any
) -> tuple[float, int]:
    """(creations/s, non-201 answers) for ``total`` POSTs of ``body`` (a Lua format: thread, counter).

    wrk runs for a fixed duration, so its threads stop sending after their share and the clock stops
    when ``created()`` (the server's count of new tasks) reaches ``total``; then wrk is interrupted and
    reports the failures.
    """
    threads = 2 if total >= 2 and connections >= 2 else 1
    lua = "\n".join(
        [
            f"PATH = {json.dumps(path)}",
            f"BODY = {json.dumps(body)}",
            f"LIMIT = {total // threads}",
            'wrk.headers["Content-Type"] = "application/json"',
            f'wrk.headers["X-SBG-Auth-Token"] = "{server.token}"',
            WRK_SCRIPT,
        ]
    )
    total = total // threads * threads
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()
        args = ["wrk", f"-t{threads}", f"-c{max(threads, connections)}", "-d3600s", "-s", script.name]
        t0 = time.perf_counter()
        proc = subprocess.Popen([*args, server.root], stdout=subprocess.PIPE, text=True)
        try:
            while created() < total:
                if proc.poll() is not None:
                    raise RuntimeError(f"wrk ended early: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.2)
            seconds = time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
    failed = re.search(r"FAILED (\d+)", out)
    return total / seconds, int(failed.group(1)) if failed else -1


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


# The data dir sits where `make run` keeps the server's (the project directory), not in /tmp: on these
# machines creating a file under /tmp cost 400-600 us against 40 us elsewhere on the same disk
# (measured), and a run creates several per task (SQLite's WAL, run directories, staged inputs).
DATA_ROOT = Path(os.environ.get("BENCH_DATA_DIR") or Path(__file__).resolve().parents[1] / ".bench-data")


def main() -> None:
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="tasks-", dir=DATA_ROOT))
    server = EmbeddedServer(engine="fake", workers=WORKERS, data_dir=data).start()
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

        def create(i: int) -> None:
            resp = client.post(
                "/tasks",
                params={"action": "run"},
                json={"project": project, "app": app, "name": f"t{i}", "inputs": {"reads": [inputs[0]]}},
            )
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])

        def lua_body(prefix: str) -> str:
            # A Lua format string: %d-%d is (wrk thread, request counter), so every task has its own name.
            head = json.dumps({"project": project, "app": app, "inputs": {"reads": [inputs[0]]}})[:-1]
            return head.replace("%", "%%") + f', "name": "{prefix}%d-%d"}}'

        def timed(what: str, total: int, path: str, one: Any) -> float:
            """Creations/s for ``total`` POSTs: by wrk when installed, else by CLIENTS Python threads."""
            if USE_WRK:
                before = count(client, project=project)
                rate, failed = wrk_post(
                    server,
                    path,
                    lua_body(what),
                    total,
                    CLIENTS,
                    lambda: count(client, project=project) - before,
                )
                assert failed == 0, f"{failed} {what} creations did not answer 201"
                return rate
            t0 = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(one, range(total)))
            return total / (time.perf_counter() - t0)

        def refresh_ids() -> None:
            """The prober also reads tasks created by wrk: the newest ones, fetched now and then."""
            while not prober.stop.is_set():
                newest = probe_client.get("/tasks", params={"project": project, "limit": 100}).json()["items"]
                ids.extend(t["id"] for t in newest)
                prober.stop.wait(2.0)

        threading.Thread(target=refresh_ids, daemon=True).start()
        generator = "wrk" if USE_WRK else f"{CLIENTS} Python threads"

        # Baseline: drafts only (nothing for the dispatcher to do), so the ratio shows what running costs.
        draft_rate = timed("d", DRAFTS, "/v2/tasks", draft)
        print(f"baseline: {DRAFTS} drafts at {draft_rate:.0f} tasks/s (no dispatcher work; {generator})")

        t0 = time.perf_counter()
        mark = len(prober.latencies)
        rate = timed("t", TASKS, "/v2/tasks?action=run", create)
        create_s = time.perf_counter() - t0
        create_p99 = p99(prober.latencies[mark:])
        queued = count(
            client, project=project, batch="false", status=["QUEUED", "RUNNING", "COMPLETED", "FAILED"]
        )
        print(
            f"created and queued {queued} tasks in {create_s:.1f} s: {rate:.0f} tasks/s "
            f"({generator}, {CLIENTS} connections)"
        )
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
        print(f"  of which during the {TASKS} creations: p99 {create_p99:.1f} ms")
        print(f"server RSS {rss:.0f} MiB; machine load average {os.getloadavg()[0]:.1f} (shared cores)")
        print(
            json.dumps(
                {
                    "bench": "tasks",
                    "tasks": TASKS,
                    "load_generator": "wrk" if USE_WRK else "python",
                    "api_processes": WORKERS,
                    "creations_per_s": round(rate, 1),
                    "draft_creations_per_s": round(draft_rate, 1),
                    "run_vs_draft_creation": round(rate / draft_rate, 2),
                    "singles_all_completed_s": round(singles_done, 1),
                    "singles_completed": completed,
                    "batch_items": BATCH,
                    "batch_children_created_s": round(expand_s, 2),
                    "batch_all_completed_s": round(batch_done, 1),
                    "batch_status": final["status"],
                    "get_probes_per_s": PROBES_PER_S,
                    "get_p99_ms_idle": round(idle_p99, 1),
                    "get_p99_ms_load": round(load_p99, 1),
                    "get_p99_load_vs_idle": round(load_p99 / idle_p99, 2),
                    "get_p99_ms_during_creations": round(create_p99, 1),
                    "server_rss_mib": round(rss, 1),
                    "load_average_1m": round(os.getloadavg()[0], 1),
                }
            )
        )
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
