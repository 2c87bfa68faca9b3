"""API hot-path benchmark: authenticated GET /v2/user and GET /v2/projects?limit=100.

Starts its own embedded server (TLS, SQLite), creates ~100 projects, then drives each endpoint with
CONCURRENCY keep-alive connections for DURATION seconds from a raw asyncio HTTP/1.1 client (uvloop
when available). The same client against ``/healthz`` (no auth, no database, no dependencies) is the
baseline: it shows what the load generator plus TLS can do on this machine, so the ratios say how
much of that ceiling the real endpoints keep.

When ``wrk`` (Debian package) is on PATH, each endpoint is also driven by it: a C load generator
that leaves the CPU to the server, so its figures are the ones the targets are judged on; the Python
client's figures stay as the no-extra-tools fallback.

Environment: BENCH_DURATION (s, default 8), BENCH_CONCURRENCY (default 10), BENCH_PROJECTS (default 100).
Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridgehead.embedded import EmbeddedServer

DURATION = float(os.environ.get("BENCH_DURATION", "8"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "10"))
PROJECTS = int(os.environ.get("BENCH_PROJECTS", "100"))


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def server_ms_per_request(self) -> float:
        """CPU the server process spent per request: meaningful even when the machine is shared."""
        return 1000 * self.server_cpu_s / max(self.requests, 1)

    @property
    def client_ms_per_request(self) -> float:
        return 1000 * self.client_cpu_s / max(self.requests, 1)

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length framed, as uvicorn sends JSON); return the status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str, port: int, ctx: ssl.SSLContext, request: bytes, until: float, out: Result
) -> None:
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        while True:
            start = time.perf_counter()
            if start >= until:
                return
            writer.write(request)
            status = await _read_response(reader)
            out.latencies_ms.append((time.perf_counter() - start) * 1000)
            out.requests += 1
            if status != 200:
                out.errors += 1
    finally:
        writer.close()


async def _load(name: str, server: EmbeddedServer, path: str, token: str | None, seconds: float) -> Result:
    ctx = ssl.create_default_context(cafile=server.ca_file)
    headers = [f"GET {path} HTTP/1.1", f"Host: localhost:{server.port}", "Accept: */*"]
    if token:
        headers.append(f"X-SBG-Auth-Token: {token}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode()
    # Warm-up: connections, TLS sessions, the auth cache, SQLAlchemy statement caches.
    warm = Result(name, 0, 0, 1.0, [])
    await asyncio.gather(
        *(_worker("127.0.0.1", server.port, ctx, request, time.perf_counter() + 1.0, warm) for _ in range(2))
    )
    out = Result(name, 0, 0, seconds, [])
    proc = psutil.Process(server.proc.pid if server.proc else os.getpid())
    cpu0, mine0 = sum(proc.cpu_times()[:2]), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(_worker("127.0.0.1", server.port, ctx, request, started + seconds, out) for _ in range(CONCURRENCY))
    )
    out.seconds = time.perf_counter() - started
    out.server_cpu_s = sum(proc.cpu_times()[:2]) - cpu0
    out.client_cpu_s = time.process_time() - mine0
    return out


def _run(coro: Coroutine[Any, Any, Result]) -> Result:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _wrk(server: EmbeddedServer, path: str, token: str | None, seconds: float) -> dict[str, float] | None:
    """Requests/s and latency percentiles (ms) measured by wrk, or None when wrk is not installed."""
    if shutil.which("wrk") is None:
        return None
    args = ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{max(1, int(seconds))}s", "--latency"]
    if token:
        args += ["-H", f"X-SBG-Auth-Token: {token}"]
    out = subprocess.run([*args, server.root + path], capture_output=True, text=True, check=True).stdout
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    figures: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M):
        figures[f"p{pct}_ms"] = float(value) * units[unit]
    figures["non_2xx"] = (
        float(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)) else 0.0
    )
    return figures


def _rss_mib(pid: int) -> float:
    proc = psutil.Process(pid)
    return float(proc.memory_info().rss) / (1024 * 1024)


def _report(r: Result) -> None:
    print(
        f"  {r.name:<22} {r.rps:8.0f} req/s   p50 {r.pct(0.50):6.2f} ms   p99 {r.pct(0.99):6.2f} ms"
        f"   server CPU {r.server_ms_per_request:.2f} ms/req, client CPU {r.client_ms_per_request:.2f} ms/req"
        f"   ({r.requests} requests, {r.errors} errors)"
    )


def main() -> None:
    with EmbeddedServer(engine="fake", tls=True, username="bench") as server:
        assert server.proc is not None and server.ca_file is not None
        with httpx.Client(
            base_url=server.url, verify=server.ca_file, headers={"X-SBG-Auth-Token": server.token}
        ) as client:
            for i in range(PROJECTS):
                client.post("/projects", json={"name": f"bench project {i}"}).raise_for_status()
            listed = client.get("/projects", params={"limit": 100})
            listed.raise_for_status()
            assert int(listed.headers["X-Total-Matching-Query"]) == PROJECTS
        rss_idle = _rss_mib(server.proc.pid)
        print(
            f"bridgehead API benchmark: {CONCURRENCY} keep-alive TLS connections, {DURATION:.0f} s per "
            f"endpoint, SQLite, {PROJECTS} projects, {os.cpu_count()} CPUs shared by client and server"
        )
        base = _run(_load("GET /healthz", server, "/healthz", None, DURATION))
        _report(base)
        user = _run(_load("GET /v2/user", server, "/v2/user", server.token, DURATION))
        _report(user)
        projects = _run(
            _load("GET /v2/projects?l=100", server, "/v2/projects?limit=100", server.token, DURATION)
        )
        _report(projects)
        wrk = {
            name: _wrk(server, path, token, DURATION)
            for name, path, token in (
                ("healthz", "/healthz", None),
                ("user", "/v2/user", server.token),
                ("projects", "/v2/projects?limit=100", server.token),
            )
        }
        for name, fig in wrk.items():
            if fig is not None:
                print(
                    f"  wrk {name:<10} {fig['rps']:8.0f} req/s   p50 {fig.get('p50_ms', 0):6.2f} ms   "
                    f"p99 {fig.get('p99_ms', 0):6.2f} ms   non-2xx {fig['non_2xx']:.0f}"
                )
        rss = _rss_mib(server.proc.pid)
        print(f"  server RSS: {rss_idle:.1f} MiB idle, {rss:.1f} MiB after the runs")
        print(
            f"  server CPU per GET /v2/user {user.server_ms_per_request:.2f} ms: one dedicated core serves "
            f"~{1000 / max(user.server_ms_per_request, 1e-6):.0f} req/s (load average now "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        judged = wrk["user"] or {"rps": user.rps, "p99_ms": user.pct(0.99)}
        ok = judged["rps"] >= 1000 and judged.get("p99_ms", 1e9) < 50 and rss < 150
        print(
            f"  targets (GET /v2/user >= 1000 req/s, p99 < 50 ms; RSS < 150 MiB): {'met' if ok else 'MISSED'}"
        )
        summary = {
            "bench": "api",
            "concurrency": CONCURRENCY,
            "duration_s": DURATION,
            "baseline_healthz_rps": round(base.rps, 1),
            "user_rps": round(user.rps, 1),
            "user_p50_ms": round(user.pct(0.50), 2),
            "user_p99_ms": round(user.pct(0.99), 2),
            "projects_rps": round(projects.rps, 1),
            "projects_p50_ms": round(projects.pct(0.50), 2),
            "projects_p99_ms": round(projects.pct(0.99), 2),
            "user_server_cpu_ms": round(user.server_ms_per_request, 3),
            "projects_server_cpu_ms": round(projects.server_ms_per_request, 3),
            "healthz_server_cpu_ms": round(base.server_ms_per_request, 3),
            # What one dedicated core could serve at the measured server CPU cost per request.
            "user_capacity_rps_per_core": round(1000 / max(user.server_ms_per_request, 1e-6), 1),
            "user_vs_baseline": round(user.rps / base.rps, 3),
            "projects_vs_baseline": round(projects.rps / base.rps, 3),
            "errors": base.errors + user.errors + projects.errors,
            "server_rss_mib": round(rss, 1),
            "wrk_healthz_rps": wrk["healthz"] and round(wrk["healthz"]["rps"], 1),
            "wrk_user_rps": wrk["user"] and round(wrk["user"]["rps"], 1),
            "wrk_user_p99_ms": wrk["user"] and round(wrk["user"].get("p99_ms", 0), 2),
            "wrk_projects_rps": wrk["projects"] and round(wrk["projects"]["rps"], 1),
            "wrk_projects_p99_ms": wrk["projects"] and round(wrk["projects"].get("p99_ms", 0), 2),
            "targets_judged_on": "wrk" if wrk["user"] else "python client",
            "targets_met": ok,
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
