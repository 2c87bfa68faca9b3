"""Files benchmark: transfer throughput through the official client, server memory, and listing latency.

1. Transfer (embedded server, TLS on loopback, SQLite): a BENCH_FILES_SIZE_MB file (default 1024) is uploaded
   with ``api.files.upload`` and downloaded with ``file.download`` (unmodified sevenbridges-python).
   Baseline: ``cp`` of the same file in the same run. The server's peak RSS is sampled during both
   transfers (psutil on the server pid). The download is hash-compared with the source.
2. Listing: BENCH_FILES_ROWS files (default 100,000) inserted straight into one project's root with
   SQLAlchemy (with their metadata index rows), then p50 of ``GET /files?project=…&limit=100``, of a
   deep page, and of a ``metadata.<key>=<value>`` query. Baseline: p50 of ``GET /user`` (auth + JSON only).

BENCH_FILES_PARTS (default ``transfer,listing``) runs one part alone while iterating.

Targets: ≥150 MB/s each way, peak RSS < 200 MiB, listing p50 < 20 ms.
Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import create_engine, insert, select

from bridgehead.db.base import new_file_id, utcnow
from bridgehead.db.models import File, Project
from bridgehead.db.models.uploads import FileMetadata
from bridgehead.embedded import EmbeddedServer

MiB = 1024 * 1024
SIZE_MB = int(os.environ.get("BENCH_FILES_SIZE_MB", "1024"))
ROWS = int(os.environ.get("BENCH_FILES_ROWS", "100000"))
SAMPLES = int(os.environ.get("BENCH_FILES_SAMPLES", "50"))
PARTS = set(os.environ.get("BENCH_FILES_PARTS", "transfer,listing").split(","))


def make_file(path: Path, size: int) -> str:
    """Random-ish content in 4 MiB slices (a fresh urandom block per slice so nothing dedups)."""
    sha = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(4 * MiB, left))
            sha.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def sha_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            sha.update(chunk)
    return sha.hexdigest()


class PeakRss:
    """Samples a process's RSS every 20 ms on a thread; ``peak`` is the highest value seen."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def transfer(server: EmbeddedServer, work: Path) -> dict[str, Any]:
    import sevenbridges as sbg  # type: ignore[import-untyped]

    size = SIZE_MB * MiB
    src = work / "payload.bin"
    print(f"generating {SIZE_MB} MiB test file ...", flush=True)
    digest = make_file(src, size)
    copy_s = timed(lambda: subprocess.run(["cp", str(src), str(work / "cp.bin")], check=True))
    (work / "cp.bin").unlink()

    api = sbg.Api(url=server.url, token=server.token)
    project = api.projects.create(name="bench-files")
    assert server.proc is not None
    idle_rss = psutil.Process(server.proc.pid).memory_info().rss
    result: dict[str, Any] = {}
    with PeakRss(server.proc.pid) as up_rss:
        up_s = timed(lambda: result.setdefault("file", api.files.upload(str(src), project=project).result()))
    uploaded = result["file"]
    assert uploaded is not None and uploaded.size == size, "upload failed"
    dst = work / "download.bin"
    with PeakRss(server.proc.pid) as down_rss:
        down_s = timed(lambda: api.files.get(uploaded.id).download(str(dst)))
    assert sha_of(dst) == digest, "downloaded bytes differ from the source"
    src.unlink()
    dst.unlink()
    mb = size / 1e6
    return {
        "size_mb": SIZE_MB,
        "cp_mb_s": round(mb / copy_s, 1),
        "upload_mb_s": round(mb / up_s, 1),
        "download_mb_s": round(mb / down_s, 1),
        "upload_vs_cp": round(copy_s / up_s, 3),
        "download_vs_cp": round(copy_s / down_s, 3),
        "server_idle_rss_mib": round(idle_rss / MiB, 1),
        "server_peak_rss_upload_mib": round(up_rss.peak / MiB, 1),
        "server_peak_rss_download_mib": round(down_rss.peak / MiB, 1),
    }


def seed_rows(server: EmbeddedServer, project_id: str, rows: int) -> None:
    """Insert ``rows`` files (and their metadata index rows) into the project's root in one transaction."""
    engine = create_engine(server.resolved_database_url)
    owner, slug = project_id.split("/")
    with engine.begin() as conn:
        project = conn.execute(
            select(Project.id, Project.root_folder).where(Project.owner == owner, Project.slug == slug)
        ).one()
        now = utcnow()
        batch: list[dict[str, Any]] = []
        meta: list[dict[str, Any]] = []
        # Sorted ids append to the primary-key indexes instead of splitting pages at random.
        for i, fid in enumerate(sorted(new_file_id() for _ in range(rows))):
            md = {"sample": f"s{i % 1000}", "batch": str(i % 10)}
            batch.append(
                {
                    "id": fid,
                    "project_id": project.id,
                    "parent_id": project.root_folder,
                    "name": f"reads_{i:07d}.fastq.gz",
                    "type": "FILE",
                    "size": i,
                    "blob_key": None,
                    "origin_task": None,
                    "storage": {"type": "PLATFORM"},
                    "metadata": md,
                    "tags": [],
                    "created_on": now,
                    "modified_on": now,
                }
            )
            meta.extend({"file_id": fid, "key": k, "value": v} for k, v in md.items())
            if len(batch) >= 5000:
                conn.execute(insert(File), batch)
                conn.execute(insert(FileMetadata), meta)
                batch, meta = [], []
        if batch:
            conn.execute(insert(File), batch)
            conn.execute(insert(FileMetadata), meta)
    engine.dispose()


def p50_ms(client: httpx.Client, path: str, params: dict[str, str], expect: int | None = None) -> float:
    times = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        resp = client.get(path, params=params)
        times.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == 200, resp.text
        if expect is not None:
            assert resp.headers["X-Total-Matching-Query"] == str(expect), resp.headers
    return round(statistics.median(times), 2)


def listing(server: EmbeddedServer) -> dict[str, Any]:
    assert server.ca_file is not None
    with httpx.Client(
        base_url=server.url, verify=server.ca_file, headers={"X-SBG-Auth-Token": server.token}, timeout=60
    ) as client:
        project = client.post("/projects", json={"name": "bench-listing"}).json()["id"]
        print(f"inserting {ROWS} file rows ...", flush=True)
        seed_s = timed(lambda: seed_rows(server, project, ROWS))
        base = p50_ms(client, "/user", {})
        first = p50_ms(client, "/files", {"project": project, "limit": "100"}, expect=ROWS)
        deep = p50_ms(client, "/files", {"project": project, "limit": "100", "offset": str(ROWS // 2)})
        matches = ROWS // 1000 + (1 if ROWS % 1000 > 42 else 0)
        meta = p50_ms(
            client, "/files", {"project": project, "limit": "100", "metadata.sample": "s42"}, expect=matches
        )
        both = p50_ms(
            client,
            "/files",
            {"project": project, "limit": "100", "metadata.sample": "s42", "metadata.batch": "2"},
        )
    return {
        "rows": ROWS,
        "seed_s": round(seed_s, 1),
        "user_p50_ms": base,
        "list_p50_ms": first,
        "list_deep_page_p50_ms": deep,
        "metadata_query_p50_ms": meta,
        "metadata_two_keys_p50_ms": both,
        "list_vs_user": round(first / base, 2),
        "metadata_vs_user": round(meta / base, 2),
    }


def judge(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, judged on the figures this run measured (absent parts are not judged)."""
    out: dict[str, Any] = {"load_avg_1m": round(os.getloadavg()[0], 2)}
    if "upload_mb_s" in figures:
        out["upload_target_met"] = figures["upload_mb_s"] >= 150
        out["download_target_met"] = figures["download_mb_s"] >= 150
        peak = max(figures["server_peak_rss_upload_mib"], figures["server_peak_rss_download_mib"])
        out["rss_target_met"] = peak < 200
    if "list_p50_ms" in figures:
        out["list_target_met"] = figures["list_p50_ms"] < 20
        out["metadata_target_met"] = figures["metadata_query_p50_ms"] < 20
    return out


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-files-"))
    server = EmbeddedServer(engine="fake", data_dir=work / "data")
    try:
        server.start()
        assert server.ca_file is not None
        os.environ["REQUESTS_CA_BUNDLE"] = server.ca_file
        figures: dict[str, Any] = {"bench": "files"}
        if "transfer" in PARTS:
            figures.update(transfer(server, work))
        if "listing" in PARTS:
            figures.update(listing(server))
        figures.update(judge(figures))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if "transfer" in PARTS:
        print(f"cp baseline           {figures['cp_mb_s']:>9} MB/s")
        print(f"upload (official)     {figures['upload_mb_s']:>9} MB/s  ({figures['upload_vs_cp']} x cp)")
        print(f"download (official)   {figures['download_mb_s']:>9} MB/s  ({figures['download_vs_cp']} x cp)")
        print(
            f"server RSS idle/up/down {figures['server_idle_rss_mib']} /"
            f" {figures['server_peak_rss_upload_mib']} / {figures['server_peak_rss_download_mib']} MiB"
        )
    if "listing" in PARTS:
        print(f"GET /user p50         {figures['user_p50_ms']:>9} ms")
        print(
            f"list 100 of {ROWS} p50 {figures['list_p50_ms']:>9} ms"
            f" (deep page {figures['list_deep_page_p50_ms']} ms)"
        )
        print(
            f"metadata query p50    {figures['metadata_query_p50_ms']:>9} ms"
            f" (two keys {figures['metadata_two_keys_p50_ms']} ms)"
        )
    print(f"load average at the end {figures['load_avg_1m']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
