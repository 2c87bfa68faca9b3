"""Scale benchmark: a large task table on PostgreSQL, 2 API processes and 2 `bridgehead worker`s.

Setup (not timed): a fresh PostgreSQL database, two API servers (`serve --no-dispatcher`, TLS) on it,
one project and a tool without outputs, then BENCH_SCALE_TASKS task rows inserted in bulk: all of
them COMPLETED history except BENCH_SCALE_QUEUED QUEUED ones.

Timed, while BENCH_SCALE_CLIENTS threads call the two API servers in turn (`GET /v2/tasks/{id}` of a
random task and `GET /v2/tasks?project=...&limit=50`) at BENCH_SCALE_RPS requests/s in all (paced:
each request is sent at its slot, or at once when the previous answer came late; 0 makes it a
closed loop, which on two shared cores measures how the load generator's own TLS clients crowd the
servers out rather than the servers):
1. cold start: two workers (fake engine, durations 0) are started with BENCH_SCALE_QUEUED tasks
   already queued; the rate counts from their process start (Python start-up and imports included);
2. steady: with both workers up and idle, BENCH_SCALE_STEADY more tasks are queued in one
   transaction; the rate counts from that commit to the last run's end (database timestamps). This
   is what a deployment sees (workers are long-running services), and the figure the dispatch
   target is judged on.
Reported: both rates, API p50/p99 per endpoint over both phases, and `GET /healthz` in the same run
as the baseline (what TLS + the load generator cost on this machine).

Targets: API p99 < 100 ms, >= 500 dispatched tasks/s.
Environment: BENCH_DATABASE_URL (an admin URL; default BRIDGEHEAD_TEST_POSTGRES_URL),
BENCH_SCALE_TASKS (default 100000), BENCH_SCALE_QUEUED (default 1000), BENCH_SCALE_STEADY (default
5000), BENCH_SCALE_CLIENTS (default 4), BENCH_SCALE_RPS (default 100), BENCH_SCALE_WORKER_NICE (the
workers' --nice; default theirs, 10).
Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
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
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import sevenbridges as sbg
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.cluster.support import db_engine, seed_queued, status_counts  # noqa: E402

from bridgehead.db.models.cluster import Worker  # noqa: E402
from bridgehead.db.models.tasks import Task  # noqa: E402
from bridgehead.embedded import EmbeddedServer  # noqa: E402

TOTAL = int(os.environ.get("BENCH_SCALE_TASKS", "100000"))
QUEUED = int(os.environ.get("BENCH_SCALE_QUEUED", "1000"))
STEADY = int(os.environ.get("BENCH_SCALE_STEADY", "5000"))
CLIENTS = int(os.environ.get("BENCH_SCALE_CLIENTS", "4"))
# Requests per second from all clients together (0: as fast as they can, a closed loop).
RPS = float(os.environ.get("BENCH_SCALE_RPS", "100"))
# The workers' --nice; empty: the worker's default (10). 0 shows what the API sees without it.
WORKER_NICE = os.environ.get("BENCH_SCALE_WORKER_NICE", "")
# Where the data dirs go (the workers' run directories): the project directory, as `make run` does; see
# bench/tasks.py for why not /tmp.
DATA_ROOT = Path(os.environ.get("BENCH_DATA_DIR") or ROOT / ".bench-data")
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("BRIDGEHEAD_TEST_POSTGRES_URL")
NO_OUTPUTS = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": ["true"],
    "inputs": [],
    "outputs": [],
}


def seed_elsewhere(url: str, project: str, count: int) -> list[str]:
    """``seed_queued`` of ``count`` QUEUED tasks, for a child process."""
    engine = db_engine(url)
    try:
        return seed_queued(engine, project, "noop", count, "bench1")
    finally:
        engine.dispose()


def admin_sql(admin_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(
        admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(statement)


def fresh_database(admin_url: str) -> str:
    name = f"bh_scale_{uuid.uuid4().hex[:10]}"
    admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def postgres_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]


def wait_ended(engine: Engine, ids: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = status_counts(engine, ids)
        if counts.get("COMPLETED", 0) + counts.get("FAILED", 0) >= len(ids):
            break
        # Rates come from the runs' own timestamps; polling more often would only load the database.
        time.sleep(0.5)
    return counts


def run_span(engine: Engine, ids: list[str]) -> tuple[Any, Any]:
    """(first start_time, last end_time) of the tasks' runs."""
    with engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(Task.start_time), func.max(Task.end_time)).where(Task.id.in_(ids))
        ).one()
    return first, last


class Load:
    """Client threads calling the API servers in turn until stopped; latencies in ms per endpoint."""

    def __init__(self, servers: list[EmbeddedServer], project: str, ids: list[str]) -> None:
        self.servers, self.project, self.ids = servers, project, ids
        self.stop = threading.Event()
        self.lat: dict[str, list[float]] = {"get_task": [], "list_tasks": [], "healthz": []}
        # The phase each latency fell in (set by main): where the tail comes from.
        self._phase, self.phase_started = "", time.perf_counter()
        self.slowest: list[tuple[float, str, str, float]] = []  # (ms, endpoint, phase, s into it)
        self.by_phase: dict[tuple[str, str], list[float]] = {}
        self.errors = 0
        self.lock = threading.Lock()

    def run(self, index: int, paths: list[str]) -> None:
        contexts = [ssl.create_default_context(cafile=s.ca_file) for s in self.servers]
        clients = [
            httpx.Client(base_url=s.root, verify=c, headers={"X-SBG-Auth-Token": s.token}, timeout=30)
            for s, c in zip(self.servers, contexts, strict=True)
        ]
        # Untimed first: the connection (TCP, TLS handshake), and each endpoint once per API process,
        # whose first call compiles its SQL statements (~100 ms, once per process and statement).
        for client in clients:
            client.get("/healthz")
            if index == 0:
                client.get(f"/v2/tasks/{self.ids[0]}")
                client.get(f"/v2/tasks?project={self.project}&limit=50")
        self.connected.wait()
        rng = random.Random(index)
        turn = index
        # Paced: each request has its slot in time and is sent at it, or at once when the previous
        # answer came late, so that a slow server is measured by its latency, not by fewer requests.
        interval = CLIENTS / RPS if RPS > 0 else 0.0
        due = time.perf_counter() + rng.random() * interval
        try:
            while not self.stop.is_set():
                client = clients[turn % len(clients)]
                turn += 1
                for kind in paths:
                    if interval:
                        pause = due - time.perf_counter()
                        if pause > 0:
                            self.stop.wait(pause)
                        due += interval
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
                            self.by_phase.setdefault((self.phase, kind), []).append(elapsed)
                            self.slowest.append((elapsed, kind, self.phase, started - self.phase_started))
                        else:
                            self.errors += 1
        finally:
            for c in clients:
                c.close()

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, name: str) -> None:
        self._phase, self.phase_started = name, time.perf_counter()

    def for_seconds(self, seconds: float, paths: list[str]) -> None:
        self.connected = threading.Barrier(CLIENTS + 1)
        threads = [threading.Thread(target=self.run, args=(i, paths)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        self.connected.wait()  # every client has its connections: the timed part starts now
        self.started = time.perf_counter()
        self.phase = self.phase
        if seconds > 0:
            time.sleep(seconds)
            self.stop.set()
        self._threads = threads

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()
        self.seconds = time.perf_counter() - self.started

    def rate(self) -> float:
        return sum(len(v) for v in self.lat.values()) / self.seconds


def main() -> None:
    if not ADMIN_URL:
        print("needs PostgreSQL: set BENCH_DATABASE_URL or BRIDGEHEAD_TEST_POSTGRES_URL (see make services)")
        print(json.dumps({"bench": "scale", "skipped": "no PostgreSQL"}))
        return
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=DATA_ROOT))
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
        load.phase = "cold start"
        load.for_seconds(0, ["get_task", "list_tasks"])
        wenv = servers[0].env()
        wenv.update(BRIDGEHEAD_DATABASE_URL=url, BRIDGEHEAD_MAX_CORES="100000")
        t0 = time.monotonic()
        for i in (1, 2):
            log = (work / f"worker{i}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bridgehead", "worker", "--engine", "fake", "--id", f"scale-{i}"]
                    + (["--nice", WORKER_NICE] if WORKER_NICE else []),
                    env=wenv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        counts = wait_ended(engine, queued, max(120.0, QUEUED / 5))
        drain = time.monotonic() - t0
        done = counts.get("COMPLETED", 0)
        # Also from the first run started to the last one ended: the rate once the workers' Python
        # processes are up (their start-up, seconds under load, is inside ``drain``).
        first, last = run_span(engine, queued)
        after_startup = done / max((last - first).total_seconds(), 1e-3) if first and last else float("nan")

        load.phase = "idle"
        # Steady state: both workers registered and idle, then one transaction queues the next tasks.
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Worker)).scalar_one() == 2
        worker_procs = [psutil.Process(w.pid) for w in workers]
        api_procs = [psutil.Process(srv.proc.pid) for srv in servers if srv.proc]
        pg_procs = postgres_processes()
        cpu_before = [cpu_seconds(worker_procs), cpu_seconds(api_procs), cpu_seconds(pg_procs)]
        load.phase = "queueing"
        # In a process of its own: in this one, building and sending 5,000 rows held the GIL that the
        # load's client threads need to read their answers, and their latencies grew with it.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            steady_ids = pool.submit(seed_elsewhere, url, project.id, STEADY).result()
        # From the commit: the tasks exist for the workers from then on (the insert itself, 2-3 s of
        # the bench's Python and PostgreSQL, used to count as dispatch time).
        queued_at = datetime.now(UTC)
        load.phase = "steady"
        steady_counts = wait_ended(engine, steady_ids, max(120.0, STEADY / 5))
        load.phase = "after"
        # Backends that started meanwhile count from zero; ones that ended are lost (a few ms).
        pg_procs = list({p.pid: p for p in [*pg_procs, *postgres_processes()]}.values())
        cpu_after = [cpu_seconds(worker_procs), cpu_seconds(api_procs), cpu_seconds(pg_procs)]
        cpu_ms = [round((a - b) * 1000 / STEADY, 2) for a, b in zip(cpu_after, cpu_before, strict=True)]
        steady_done = steady_counts.get("COMPLETED", 0)
        _, steady_last = run_span(engine, steady_ids)
        steady = steady_done / max((steady_last - queued_at).total_seconds(), 1e-3) if steady_last else 0.0
        load.join()
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                w.wait(timeout=30)
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
        # Each run's 100,000 tasks would otherwise stay behind, and every later checkpoint would
        # sync their files too.
        with contextlib.suppress(Exception):
            engine.dispose()
        admin_sql(ADMIN_URL, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    rate = done / drain
    seconds = STEADY / steady if steady else float("nan")
    p99_get = percentile(load.lat["get_task"], 0.99)
    p99_list = percentile(load.lat["list_tasks"], 0.99)
    p99_health = percentile(baseline.lat["healthz"], 0.99)
    print(
        f"cold start: {done}/{QUEUED} queued tasks completed in {drain:.1f} s from the 2 workers' process "
        f"start: {rate:.0f} tasks/s ({after_startup:.0f}/s from the first run started to the last ended)"
    )
    print(
        f"steady: {steady_done}/{STEADY} tasks queued at once, completed {seconds:.1f} s after queueing "
        f"began by the 2 running workers: {steady:.0f} tasks/s"
    )
    print(f"  CPU per steady task: workers {cpu_ms[0]} ms, API {cpu_ms[1]} ms, PostgreSQL {cpu_ms[2]} ms")
    for kind, values in (*load.lat.items(), ("healthz", baseline.lat["healthz"])):
        if values:
            print(
                f"  {kind:10s} n={len(values):6d} p50 {percentile(values, 0.5):6.1f} ms  "
                f"p99 {percentile(values, 0.99):6.1f} ms"
            )
    for phase in ("cold start", "idle", "queueing", "steady"):
        parts = [
            f"{kind} p99 {percentile(load.by_phase.get((phase, kind), []), 0.99):.1f} ms"
            f" (n={len(load.by_phase.get((phase, kind), []))})"
            for kind in ("get_task", "list_tasks")
        ]
        print(f"    during {phase}: " + ", ".join(parts))
    slow = ", ".join(
        f"{ms:.0f} ms {kind} {at:.1f} s into {phase}" for ms, kind, phase, at in sorted(load.slowest)[-5:]
    )
    print(f"    slowest: {slow}")
    print(f"  API load {load.rate():.0f} requests/s (asked {RPS:g}; 0 = closed loop), errors {load.errors}")
    print(f"  workers at nice {WORKER_NICE or '10 (the default)'}")
    print(
        json.dumps(
            {
                "bench": "scale",
                "tasks_in_db": TOTAL,
                "queued": QUEUED,
                "completed": done,
                "dispatch_tasks_per_s_cold_start": round(rate, 1),
                "dispatch_tasks_per_s_cold_after_startup": round(after_startup, 1),
                "steady_queued": STEADY,
                "steady_completed": steady_done,
                "dispatch_tasks_per_s": round(steady, 1),
                "steady_cpu_ms_per_task_workers": cpu_ms[0],
                "steady_cpu_ms_per_task_api": cpu_ms[1],
                "steady_cpu_ms_per_task_postgres": cpu_ms[2],
                "get_task_p50_ms": round(percentile(load.lat["get_task"], 0.5), 1),
                "get_task_p99_ms": round(p99_get, 1),
                "list_tasks_p99_ms": round(p99_list, 1),
                "healthz_p99_ms": round(p99_health, 1),
                "get_task_p99_vs_healthz": round(p99_get / p99_health, 2) if p99_health else None,
                "api_requests_per_s": round(load.rate(), 1),
                "api_errors": load.errors,
                "worker_nice": int(WORKER_NICE or 10),
                "p99_target_met": max(p99_get, p99_list) < 100,
                "dispatch_target_met": steady >= 500,
            }
        )
    )


if __name__ == "__main__":
    main()
