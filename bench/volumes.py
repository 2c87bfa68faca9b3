"""Volume transfer benchmark: imports and exports through the API, against plain copies of the same bytes.

Starts its own embedded server (TLS, SQLite) with a local volume root and a moto S3 server, then times,
from submit until the client sees COMPLETED:
- a SIZE_MB import and export on a local-directory volume; baseline: ``shutil.copyfile`` of the same size
  followed by fsync (imports and exports are durable when they report COMPLETED);
- a SIZE_MB import and export on an S3 volume; baseline: boto3 ``upload_file``/``download_file`` of the
  same size from this process to the same moto server (what the S3 endpoint itself allows);
- a folder import of SMALL_FILES small files (per-file overhead: files per second).

Environment: BENCH_SIZE_MB (default 64), BENCH_SMALL_FILES (default 200).
Prints human-readable figures and ends with one JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bridgehead.embedded import EmbeddedServer, free_port

SIZE_MB = int(os.environ.get("BENCH_SIZE_MB", "64"))
SMALL_FILES = int(os.environ.get("BENCH_SMALL_FILES", "200"))
KEY, SECRET = "bench-key", "bench-secret"


def random_file(path: Path, size_mb: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1024 * 1024))


def timed_transfer(client: httpx.Client, kind: str, body: dict[str, Any], query: str = "") -> float:
    start = time.perf_counter()
    resp = client.post(f"/storage/{kind}{query}", json=body)
    resp.raise_for_status()
    tid = resp.json()["id"]
    while True:
        state = client.get(f"/storage/{kind}/{tid}").json()
        if state["state"] == "COMPLETED":
            return time.perf_counter() - start
        if state["state"] == "FAILED":
            raise RuntimeError(f"{kind} failed: {state['error']}")
        time.sleep(0.02)


def mb_s(seconds: float, size_mb: float = SIZE_MB) -> float:
    return round(size_mb / seconds, 1)


def main() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log

    work = Path(tempfile.mkdtemp(prefix="bh-bench-volumes-"))
    root = work / "volume"
    s3_port = free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    server = EmbeddedServer(
        engine="fake",
        data_dir=work / "data",
        extra_env={"BRIDGEHEAD_VOLUME_ROOTS": str(root), "AWS_ENDPOINT_URL": s3_url},
    )
    (work / "data").mkdir()
    root.mkdir()
    try:
        server.start()
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_url,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        out: dict[str, Any] = {"bench": "volumes", "size_mb": SIZE_MB, "small_files": SMALL_FILES}
        with httpx.Client(
            base_url=server.url,
            verify=server.ca_file or False,
            headers={"X-SBG-Auth-Token": server.token},
            timeout=600,
        ) as client:
            project = client.post("/projects", json={"name": "bench"}).json()["id"]
            local = client.post(
                "/storage/volumes",
                json={
                    "name": "local_bench",
                    "access_mode": "RW",
                    "service": {"type": "local", "root": str(root)},
                },
            ).json()["id"]
            remote = client.post(
                "/storage/volumes",
                json={
                    "name": "s3_bench",
                    "access_mode": "RW",
                    "service": {
                        "type": "s3",
                        "bucket": bucket,
                        "credentials": {"access_key_id": KEY, "secret_access_key": SECRET},
                    },
                },
            ).json()["id"]

            # Baselines: a plain copy of the same size on the same disk, and the same copy made durable
            # (fsync), which is what the blob store and the volume writer promise.
            random_file(root / "big.bin", SIZE_MB)
            start = time.perf_counter()
            shutil.copyfile(root / "big.bin", work / "copy.bin")
            out["copy_baseline_mb_s"] = mb_s(time.perf_counter() - start)
            with open(work / "copy.bin", "rb+") as fh:
                os.fsync(fh.fileno())
            out["copy_fsync_baseline_mb_s"] = mb_s(time.perf_counter() - start)
            (work / "copy.bin").unlink()

            dest = {"project": project}
            seconds = timed_transfer(
                client, "imports", {"source": {"volume": local, "location": "big.bin"}, "destination": dest}
            )
            out["local_import_mb_s"] = mb_s(seconds)
            files = client.get("/files", params={"project": project, "name": "big.bin"}).json()["items"]
            file_id = files[0]["id"]
            seconds = timed_transfer(
                client,
                "exports",
                {"source": {"file": file_id}, "destination": {"volume": local, "location": "out/big.bin"}},
                "?copy_only=true",
            )
            out["local_export_mb_s"] = mb_s(seconds)

            # S3: direct client transfers to moto are the baseline.
            random_file(work / "s3big.bin", SIZE_MB)
            start = time.perf_counter()
            s3.upload_file(str(work / "s3big.bin"), bucket, "s3big.bin")
            out["s3_direct_put_mb_s"] = mb_s(time.perf_counter() - start)
            start = time.perf_counter()
            s3.download_file(bucket, "s3big.bin", str(work / "s3down.bin"))
            out["s3_direct_get_mb_s"] = mb_s(time.perf_counter() - start)
            seconds = timed_transfer(
                client,
                "imports",
                {"source": {"volume": remote, "location": "s3big.bin"}, "destination": dest},
            )
            out["s3_import_mb_s"] = mb_s(seconds)
            files = client.get("/files", params={"project": project, "name": "s3big.bin"}).json()["items"]
            seconds = timed_transfer(
                client,
                "exports",
                {
                    "source": {"file": files[0]["id"]},
                    "destination": {"volume": remote, "location": "out/s3big.bin"},
                },
                "?copy_only=true",
            )
            out["s3_export_mb_s"] = mb_s(seconds)

            for i in range(SMALL_FILES):
                (root / "many" / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
                (root / "many" / f"d{i % 10}" / f"f{i}.txt").write_bytes(os.urandom(512))
            seconds = timed_transfer(
                client, "imports", {"source": {"volume": local, "location": "many/"}, "destination": dest}
            )
            out["small_files_per_s"] = round(SMALL_FILES / seconds, 1)

        out["local_import_ratio"] = round(out["local_import_mb_s"] / out["copy_fsync_baseline_mb_s"], 3)
        out["local_export_ratio"] = round(out["local_export_mb_s"] / out["copy_fsync_baseline_mb_s"], 3)
        out["s3_import_ratio"] = round(out["s3_import_mb_s"] / out["s3_direct_get_mb_s"], 3)
        out["s3_export_ratio"] = round(out["s3_export_mb_s"] / out["s3_direct_put_mb_s"], 3)
        print(f"{SIZE_MB} MB object, submit -> COMPLETED as seen by a polling client:")
        print(f"  local dir: import {out['local_import_mb_s']} MB/s, export {out['local_export_mb_s']} MB/s")
        print(
            f"             copy baseline {out['copy_baseline_mb_s']} MB/s,"
            f" with fsync {out['copy_fsync_baseline_mb_s']} MB/s (ratios use this)"
        )
        print(f"  S3 (moto): import {out['s3_import_mb_s']} MB/s, export {out['s3_export_mb_s']} MB/s")
        direct = f"get {out['s3_direct_get_mb_s']} MB/s, put {out['s3_direct_put_mb_s']} MB/s"
        print(f"             direct boto3 {direct}")
        print(f"  folder import of {SMALL_FILES} small files: {out['small_files_per_s']} files/s")
        print(json.dumps(out))
    finally:
        server.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
