"""Scale benchmark: a large task table on PostgreSQL, 2 API processes and 2 `bridgehead worker`s.

Setup (not timed): a fresh PostgreSQL database, two API servers (`serve --no-dispatcher`, TLS) on it,
one project and a tool without outputs, then BENCH_SCALE_TASKS task rows inserted in bulk: all of
them COMPLETED history except BENCH_SCALE_QUEUED QUEUED ones.

Timed: two workers (fake engine, durations 0) start and drain the queued tasks while
BENCH_SCALE_CLIENTS threads call the two API servers in turn: `GET /v2/tasks/{id}` (random task) and
`GET /v2/tasks?project=...&limit=50`. Reported: dispatch rate (queued tasks completed per second from
the workers' start: the figure the target is judged on; also, for information, from the first run
started to the last run ended, i.e. without the workers' process start-up), API p50/p99 per
endpoint, and `GET /healthz` in the same run as the baseline (what TLS + the load generator cost on
this machine).

Targets: API p99 < 100 ms, >= 500 dispatched tasks/s.
Environment: BENCH_DATABASE_URL (an admin URL; default BRIDGEHEAD_TEST_POSTGRES_URL),
BENCH_SCALE_TASKS (default 100000), BENCH_SCALE_QUEUED (default 1000), BENCH_SCALE_CLIENTS (default 4).
Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import sevenbridges as sbg
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.cluster.support import db_engine, seed_queued, status_counts  # noqa: E402

from bridgehead.db.models.tasks import Task  # noqa: E402
from bridgehead.embedded import EmbeddedServer  # noqa: E402

TOTAL = int(os.environ.get("BENCH_SCALE_TASKS", "100000"))
QUEUED = int(os.environ.get("BENCH_SCALE_QUEUED", "1000"))
CLIENTS = int(os.environ.get("BENCH_SCALE_CLIENTS", "4"))
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("BRIDGEHEAD_TEST_POSTGRES_URL")
NO_OUTPUTS = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": ["true"],
    "inputs": [],
    "outputs": [],
}


def fresh_database(admin_url: str) -> str:
    import psycopg

    name = f"bh_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    """Client threads calling the API servers in turn until stopped; latencies in ms per endpoint."""

    def __init__(self, servers: list[EmbeddedServer], project: str, ids: list[str]) -> None:
        self.servers, self.project, self.ids = servers, project, ids
        self.stop = threading.Event()
        self.lat: dict[str, list[float]] = {"get_task": [], "list_tasks": [], "healthz": []}
        self.errors = 0
        self.lock = threading.Lock()

    def run(self, index: int, paths: list[str]) -> None:
        contexts = [ssl.create_default_context(cafile=s.ca_file) for s in self.servers]
        clients = [
            httpx.Client(base_url=s.root, verify=c, headers={"X-SBG-Auth-Token": s.token}, timeout=30)
            for s, c in zip(self.servers, contexts, strict=True)
        ]
        rng = random.Random(index)
        turn = index
        try:
            while not self.stop.is_set():
                client = clients[turn % len(clients)]
                turn += 1
                for kind in paths:
                    if kind == "get_task":
                        url = f"/v2/tasks/{rng.choice(self.ids)}"
                    elif kind == "list_tasks":
                        url = f"/v2/tasks?project={self.project}&limit=50"
                    else:
                        url = "/healthz"
                    started = time.perf_counter()
                    resp = client.get(url)
                    elapsed = (time.perf_counter() - started) * 1000
                    with self.lock:
                        if resp.status_code == 200:
                            self.lat[kind].append(elapsed)
                        else:
                            self.errors += 1
        finally:
            for c in clients:
                c.close()

    def for_seconds(self, seconds: float, paths: list[str]) -> None:
        threads = [threading.Thread(target=self.run, args=(i, paths)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        if seconds > 0:
            time.sleep(seconds)
            self.stop.set()
        self._threads = threads

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()


def main() -> None:
    if not ADMIN_URL:
        print("needs PostgreSQL: set BENCH_DATABASE_URL or BRIDGEHEAD_TEST_POSTGRES_URL (see make services)")
        print(json.dumps({"bench": "scale", "skipped": "no PostgreSQL"}))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    url = fresh_database(ADMIN_URL)
    env = {"BRIDGEHEAD_DISPATCHER": "false"}
    servers = [
        EmbeddedServer(
            engine="fake", data_dir=work / "data", database_url=url, username=f"bench{i}", extra_env=env
        )
        for i in (1, 2)
    ]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for s in servers:
            s.start()
        os.environ["REQUESTS_CA_BUNDLE"] = str(servers[0].ca_file)
        api = sbg.Api(url=servers[0].url, token=servers[0].token)
        project = api.projects.create(name="scale", billing_group=api.billing_groups.query()[0].id)
        api.apps.install_app(id=f"{project.id}/noop", raw=NO_OUTPUTS)
        engine = db_engine(url)
        started = time.monotonic()
        history = seed_queued(engine, project.id, "noop", TOTAL - QUEUED, "bench1", status="COMPLETED")
        queued = seed_queued(engine, project.id, "noop", QUEUED, "bench1")
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE tasks")
        print(f"seeded {TOTAL} tasks ({QUEUED} queued) in {time.monotonic() - started:.1f} s", flush=True)

        baseline = Load(servers, project.id, history)
        baseline.for_seconds(3, ["healthz"])
        baseline.join()

        load = Load(servers, project.id, history + queued)
        load.for_seconds(0, ["get_task", "list_tasks"])
        wenv = servers[0].env()
        wenv.update(BRIDGEHEAD_DATABASE_URL=url, BRIDGEHEAD_MAX_CORES="100000")
        t0 = time.monotonic()
        for i in (1, 2):
            log = (work / f"worker{i}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bridgehead", "worker", "--engine", "fake", "--id", f"scale-{i}"],
                    env=wenv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = t0 + max(120.0, QUEUED / 5)
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = status_counts(engine, queued)
            if counts.get("COMPLETED", 0) + counts.get("FAILED", 0) >= QUEUED:
                break
            time.sleep(0.25)
        drain = time.monotonic() - t0
        load.join()
        done = counts.get("COMPLETED", 0)
        # Also from the first run started to the last one ended: the rate once the workers' Python
        # processes are up (their start-up, seconds under load, is inside ``drain``).
        with engine.connect() as conn:
            first, last = conn.execute(
                select(func.min(Task.start_time), func.max(Task.end_time)).where(Task.id.in_(queued))
            ).one()
        steady = done / max((last - first).total_seconds(), 1e-3) if first and last else float("nan")
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                w.wait(timeout=30)
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    rate = done / drain
    p99_get = percentile(load.lat["get_task"], 0.99)
    p99_list = percentile(load.lat["list_tasks"], 0.99)
    p99_health = percentile(baseline.lat["healthz"], 0.99)
    print(
        f"dispatch: {done}/{QUEUED} queued tasks completed in {drain:.1f} s by 2 workers: {rate:.0f} tasks/s"
    )
    print(f"  first run started -> last run ended (workers already up): {steady:.0f} tasks/s")
    for kind, values in (*load.lat.items(), ("healthz", baseline.lat["healthz"])):
        if values:
            print(
                f"  {kind:10s} n={len(values):6d} p50 {percentile(values, 0.5):6.1f} ms  "
                f"p99 {percentile(values, 0.99):6.1f} ms"
            )
    print(f"  errors: {load.errors}")
    print(
        json.dumps(
            {
                "bench": "scale",
                "tasks_in_db": TOTAL,
                "queued": QUEUED,
                "completed": done,
                "dispatch_tasks_per_s": round(rate, 1),
                "dispatch_tasks_per_s_after_startup": round(steady, 1),
                "get_task_p50_ms": round(percentile(load.lat["get_task"], 0.5), 1),
                "get_task_p99_ms": round(p99_get, 1),
                "list_tasks_p99_ms": round(p99_list, 1),
                "healthz_p99_ms": round(p99_health, 1),
                "get_task_p99_vs_healthz": round(p99_get / p99_health, 2) if p99_health else None,
                "api_errors": load.errors,
                "p99_target_met": max(p99_get, p99_list) < 100,
                "dispatch_target_met": rate >= 500,
            }
        )
    )


if __name__ == "__main__":
    main()
