"""Background loop that runs imports and exports.

Each run has three steps so that no database transaction is open while bytes move: read what to do
(short read), copy (volume -> blob store, or blob store -> volume), then record the outcome (short
write). A failed import deletes the blobs it stored unless another file already uses them, so no
orphan content is left behind; a failed export never leaves a partial object (backends write
atomically).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bridgehead.config import Settings
from bridgehead.db.models import File, Project
from bridgehead.db.models.volumes import EXPORT, Transfer, Volume
from bridgehead.db.session import Database
from bridgehead.domain import files
from bridgehead.domain import transfers as domain
from bridgehead.domain.errors import SbgError
from bridgehead.storage.blobs import CHUNK, LocalBlobStore, store_for
from bridgehead.storage.volumes import ObjectInfo, VolumeBackend, VolumeError, backend_for

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
FOLDER_PARALLELISM = 4
_wake = threading.Event()


def wake() -> None:
    """Tell the loop new work is queued (called after a submit commits)."""
    _wake.set()


class Failure(Exception):
    """A transfer outcome to record as FAILED, with the SBG error it carries."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Job:
    id: str
    kind: str
    location: str
    volume: str
    service: dict[str, object] | None
    spec: dict[str, object]


def _load(db: Database, transfer_id: str) -> Job:
    with db.read() as s:
        row = s.get(Transfer, transfer_id)
        assert row is not None
        vol = s.get(Volume, row.volume_id) if row.volume_id is not None else None
        service = dict(vol.service) if vol is not None else None
        return Job(row.id, row.kind, row.location, row.volume, service, dict(row.spec or {}))


def _volume_failure(exc: VolumeError, missing_code: int) -> Failure:
    if exc.missing:
        return Failure(404, missing_code, exc.message)
    return Failure(400, 9103, exc.message)


def run_one(db: Database, blobs: LocalBlobStore, transfer_id: str) -> None:
    """Run one claimed (RUNNING) transfer to COMPLETED or FAILED."""
    job = _load(db, transfer_id)
    try:
        if job.service is None:
            raise Failure(404, 9007, f"Volume {job.volume} no longer exists.")
        if job.kind == EXPORT:
            _export(db, blobs, job)
        else:
            _import(db, blobs, job)
        log.info("%s %s of %s:%s completed", job.kind.lower(), job.id, job.volume, job.location)
    except Failure as f:
        _record_failure(db, job.id, f.status, f.code, f.message)
    except SbgError as e:
        _record_failure(db, job.id, e.status, e.code, e.message)
    except Exception as exc:  # an unexpected bug must still end the transfer, not leave it RUNNING
        log.exception("transfer %s failed unexpectedly", job.id)
        _record_failure(db, job.id, 500, 90004, f"Unexpected error: {exc}")


def _record_failure(db: Database, transfer_id: str, status: int, code: int, message: str) -> None:
    log.info("transfer %s failed: %s", transfer_id, message)
    with db.write() as s:
        row = s.get(Transfer, transfer_id)
        if row is not None:
            domain.fail(s, row, status, code, message)


# --- imports ---------------------------------------------------------------------------------


def _import(db: Database, blobs: LocalBlobStore, job: Job) -> None:
    assert job.service is not None
    backend = backend_for(job.service)
    stored: list[tuple[str, str, int]] = []  # (relative path, blob key, size)
    try:
        if job.location.endswith("/"):
            try:
                objects = list(backend.walk(job.location))
            except VolumeError as exc:
                raise _volume_failure(exc, 9105) from None
            if not objects:
                raise Failure(404, 9105, f"No objects under {backend.describe(job.location)}.")
            _store_many(blobs, backend, job.location, objects, stored)
        else:
            if backend.stat(job.location) is None:
                raise Failure(404, 9105, f"Object {backend.describe(job.location)} does not exist.")
            key, size = _store(blobs, backend.read(job.location), job.location)
            stored.append(("", key, size))
        replaced = _place(db, job, stored)
    except BaseException:
        _forget(db, blobs, [k for _, k, _ in stored])
        raise
    _forget(db, blobs, replaced)


def _store_many(
    blobs: LocalBlobStore,
    backend: VolumeBackend,
    top: str,
    objects: list[ObjectInfo],
    stored: list[tuple[str, str, int]],
) -> None:
    """Copy a folder's objects a few at a time (each blob write waits on fsync, so overlapping them
    pays off). Every blob that made it in is appended to ``stored`` even when another failed, so the
    caller can clean them all up; the first error is re-raised after all copies ended."""
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=FOLDER_PARALLELISM) as pool:
        futures = [
            (obj, pool.submit(_store, blobs, backend.read(obj.location), obj.location)) for obj in objects
        ]
        for obj, future in futures:
            try:
                key, size = future.result()
            except BaseException as exc:
                error = error or exc
                continue
            stored.append((obj.location[len(top) :], key, size))
    if error is not None:
        raise error


def _store(blobs: LocalBlobStore, chunks: Iterator[bytes], location: str) -> tuple[str, int]:
    try:
        return blobs.put_chunks(chunks)
    except VolumeError as exc:
        raise _volume_failure(exc, 9105) from None


def _place(db: Database, job: Job, stored: list[tuple[str, str, int]]) -> list[str]:
    """Create the project files in one transaction; returns the blob keys that overwritten files
    used to point at (candidates for deletion once this commits)."""
    spec = job.spec
    replaced: list[str] = []
    dest = spec["destination"]
    assert isinstance(dest, dict)
    conflict: files.Conflicts = (
        "overwrite" if spec.get("overwrite") else "autorename" if spec.get("autorename") else "error"
    )
    with db.write() as s:
        row = s.get(Transfer, job.id)
        parent = s.get(File, str(spec["parent_id"]))
        if row is None:
            return replaced
        if parent is None or not parent.is_folder:
            raise Failure(404, 9009, f"Destination folder {spec['parent_id']} no longer exists.")
        project = s.get(Project, parent.project_id)
        assert project is not None
        origin = {"type": "PLATFORM", "import": {"volume": job.volume, "location": job.location}}
        name = str(dest["name"])
        if not job.location.endswith("/"):
            _, key, size = stored[0]
            result = _put(
                s,
                replaced,
                project=project,
                parent=parent,
                name=name,
                blob_key=key,
                size=size,
                conflict=conflict,
                storage=origin,
            )
        else:
            top = parent
            if spec.get("preserve_folder_structure", True):
                top = files.make_folder(s, project=project, parent=parent, name=name, exist_ok=True)
            for rel, key, size in stored:
                folder = top
                parts = rel.split("/")
                if spec.get("preserve_folder_structure", True):
                    for part in parts[:-1]:
                        folder = files.make_folder(
                            s, project=project, parent=folder, name=part, exist_ok=True
                        )
                storage = {
                    "type": "PLATFORM",
                    "import": {"volume": job.volume, "location": job.location + rel},
                }
                _put(
                    s,
                    replaced,
                    project=project,
                    parent=folder,
                    name=parts[-1],
                    blob_key=key,
                    size=size,
                    conflict=conflict,
                    storage=storage,
                )
            result = top
        domain.complete(s, row, result)
    return replaced


def _put(
    s: Session,
    replaced: list[str],
    *,
    project: Project,
    parent: File,
    name: str,
    blob_key: str,
    size: int,
    conflict: files.Conflicts,
    storage: Mapping[str, Any],
) -> File:
    if conflict == "overwrite":
        old = files.child(s, parent.id, name)
        if old is not None and old.blob_key and old.blob_key != blob_key:
            replaced.append(old.blob_key)
    return files.place_file(
        s,
        project=project,
        parent=parent,
        name=name,
        blob_key=blob_key,
        size=size,
        conflict=conflict,
        storage=dict(storage),
    )


def _forget(db: Database, blobs: LocalBlobStore, keys: list[str]) -> None:
    """Delete blobs this import stored (or replaced) that no file row points at."""
    if keys:
        with db.read() as s:
            files.collect_blobs(s, blobs, list(keys))


# --- exports ---------------------------------------------------------------------------------


def _export(db: Database, blobs: LocalBlobStore, job: Job) -> None:
    assert job.service is not None
    spec = job.spec
    file_id = str(spec["file"])
    with db.read() as s:
        found = s.get(File, file_id)
        if found is None:
            raise Failure(404, 9009, f"File {file_id} no longer exists.")
        key, size = found.blob_key, int(found.size or 0)
    backend = backend_for(job.service)
    try:
        if not spec.get("overwrite") and backend.stat(job.location) is not None:
            raise Failure(
                409,
                9107,
                f"Location {backend.describe(job.location)} is occupied; set overwrite to replace it.",
            )
        if key is not None and not blobs.exists(key):
            raise Failure(500, 90004, f"The content of file {file_id} is missing from the blob store.")
        backend.write(job.location, _chunks(blobs, key, size))
    except VolumeError as exc:
        raise _volume_failure(exc, 9105) from None
    with db.write() as s:
        row = s.get(Transfer, job.id)
        exported = s.get(File, file_id)
        if row is None:
            return
        if exported is not None and not spec.get("copy_only", True):
            exported.storage = {"type": "VOLUME", "volume": job.volume, "location": job.location}
        domain.complete(s, row, exported)


def _chunks(blobs: LocalBlobStore, key: str | None, size: int) -> Iterator[bytes]:
    if key is None or size == 0:
        return
    with blobs.open(key) as fh:
        yield from iter(lambda: fh.read(CHUNK), b"")


# --- the loop --------------------------------------------------------------------------------


class TransferWorker:
    """``threads`` daemon threads, each claiming and running one transfer at a time.

    ``owner`` is the id of the process it runs in (the dispatcher's or worker's id): claimed rows carry it,
    and ``start`` requeues only that owner's interrupted rows, never those another live process runs."""

    def __init__(self, db: Database, settings: Settings, owner: str, threads: int = 2) -> None:
        self.db = db
        self.owner = owner
        self.blobs = store_for(settings)
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, name=f"transfers-{i}", daemon=True) for i in range(threads)
        ]

    def start(self) -> TransferWorker:
        with self.db.write() as s:
            retried, failed = domain.recover(s, [self.owner])
        if retried or failed:
            log.info("transfers after restart: %d queued again, %d failed", retried, failed)
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        _wake.set()
        for t in self.threads:
            t.join(timeout)

    def _claim(self) -> str | None:
        with self.db.write() as s:
            row = domain.claim(s, self.owner)
            return row.id if row is not None else None

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                claimed = self._claim()
            except Exception:
                log.exception("could not claim a transfer")
                claimed = None
            if claimed is not None:
                run_one(self.db, self.blobs, claimed)
                continue
            _wake.wait(POLL_SECONDS)
            _wake.clear()
