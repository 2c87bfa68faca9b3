"""Multipart uploads: the rows that track an upload, and its bytes on disk.

Signed PUTs write each part straight to its offset in one file, ``data_dir/uploads/<upload id>/data``
(any order, in parallel, re-sendable), so the bytes are written once: completing renames that file
into the blob store instead of concatenating copies. Its SHA-256 (the blob key) is computed while the
upload runs (``DigestCursor``), so completing does not read a whole file back. The blob is made
outside the write transaction, so completion is three steps driven by the API layer: ``ready_data``
(checks), ``assemble`` (bytes), ``finish`` (rows).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import secrets
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bridgehead.config import Settings
from bridgehead.db.base import utcnow
from bridgehead.db.models import File, Project, User
from bridgehead.db.models.uploads import Upload, UploadPart
from bridgehead.domain import files, projects
from bridgehead.domain.errors import BadRequest, Conflict, NotFound
from bridgehead.storage.blobs import LocalBlobStore

MIN_PART = 5 * 1024 * 1024
MAX_PART = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
MAX_SIZE = 5 * 1024**4
# An upload nobody completed or aborted within a week is abandoned; its bytes are reclaimed.
STALE_AFTER = timedelta(days=7)


def uploads_root(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def part_dir(settings: Settings, upload_id: str) -> Path:
    return uploads_root(settings) / upload_id


def data_path(settings: Settings, upload_id: str) -> Path:
    return part_dir(settings, upload_id) / "data"


def part_offset(upload: Upload, number: int) -> int:
    return (number - 1) * upload.part_size


def part_count(size: int, part_size: int) -> int:
    """A zero-byte file is still one (empty) part."""
    return max(1, math.ceil(size / part_size))


def expected_size(upload: Upload, number: int) -> int:
    """Every part is ``part_size`` except the last, whose size ``size`` implies."""
    count = part_count(upload.size, upload.part_size)
    if number < count:
        return upload.part_size
    return upload.size - (count - 1) * upload.part_size


def choose_part_size(size: int, requested: Any, default: int) -> int:
    """The client's part size when sensible, else the server default; never more than 10,000 parts."""
    part = requested if isinstance(requested, int) and MIN_PART <= requested <= MAX_PART else default
    return max(part, MIN_PART, math.ceil(size / MAX_PARTS))


def _int_field(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer number of bytes.", code=8013, field=name)
    return value


def start(
    session: Session,
    user: User,
    settings: Settings,
    *,
    project: Any,
    parent: Any,
    name: Any,
    size: Any,
    part_size: Any,
    overwrite: bool,
) -> Upload:
    """Open an upload after checking the destination, the name and the size."""
    size_v = _int_field(size, "size")
    if size_v is None:
        raise BadRequest("'size' (bytes) is required to start an upload.", code=8013, field="size")
    if size_v < 0 or size_v > MAX_SIZE:
        raise BadRequest(f"'size' must be between 0 and {MAX_SIZE} bytes.", code=8013, field="size")
    requested = _int_field(part_size, "part_size")
    name_v = files.check_name(name)
    dest, acc = files.destination(session, user, project, parent)
    existing = files.child(session, dest.id, name_v)
    if existing is not None and (not overwrite or existing.is_folder):
        raise Conflict(f"A file named {name_v!r} already exists in this folder.", code=5003, field="name")
    upload = Upload(
        id=secrets.token_hex(24),
        user_id=user.id,
        project_id=acc.project.id,
        parent_id=dest.id,
        name=name_v,
        size=size_v,
        part_size=choose_part_size(size_v, requested, settings.upload_part_size),
        overwrite=overwrite,
        initiated=utcnow(),
    )
    session.add(upload)
    session.flush()
    return upload


def get(session: Session, user: User, upload_id: str) -> Upload:
    """An upload of the caller (admins see every upload); 404 (8003) otherwise."""
    upload = session.get(Upload, upload_id) if isinstance(upload_id, str) and len(upload_id) <= 64 else None
    if upload is None or (upload.user_id != user.id and not user.is_admin):
        raise NotFound(f"Upload {upload_id} does not exist.", code=8003, field="upload_id")
    return upload


def list_for(session: Session, user: User, offset: int, limit: int) -> tuple[list[Upload], int]:
    cond = Upload.user_id == user.id
    total = session.scalar(select(func.count()).select_from(Upload).where(cond)) or 0
    rows = session.scalars(select(Upload).where(cond).order_by(Upload.initiated).offset(offset).limit(limit))
    return list(rows), total


def parts(session: Session, upload_id: str) -> list[UploadPart]:
    query = select(UploadPart).where(UploadPart.upload_id == upload_id).order_by(UploadPart.part_number)
    return list(session.scalars(query))


def check_part_number(upload: Upload, number: int) -> None:
    count = part_count(upload.size, upload.part_size)
    if not 1 <= number <= count:
        raise BadRequest(
            f"Part number {number} is out of range: this upload has parts 1 to {count}.",
            code=8012,
            field="part_number",
        )


def forget_part(session: Session, upload_id: str, number: int) -> None:
    """A failed PUT may have overwritten the part's byte range: it no longer counts as received."""
    session.execute(
        delete(UploadPart).where(UploadPart.upload_id == upload_id, UploadPart.part_number == number)
    )


def record_part(session: Session, upload_id: str, number: int, size: int, etag: str) -> None:
    """Remember a received part (a re-sent part replaces the earlier one)."""
    row = session.get(UploadPart, (upload_id, number))
    if row is None:
        session.add(UploadPart(upload_id=upload_id, part_number=number, size=size, etag=etag, reported=False))
    else:
        row.size, row.etag, row.reported, row.uploaded_on = size, etag, False, utcnow()
    session.flush()


def report_part(session: Session, upload: Upload, number: Any, etag: Any) -> None:
    """The client's report of a PUT: the part must have arrived, with the same ETag when one is given."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise BadRequest("'part_number' must be an integer.", code=8014, field="part_number")
    check_part_number(upload, number)
    row = session.get(UploadPart, (upload.id, number))
    if row is None:
        raise BadRequest(f"Part {number} has not been uploaded.", code=8014, field="part_number")
    if isinstance(etag, str) and etag.strip('"') and etag.strip('"') != row.etag:
        raise BadRequest(
            f"ETag of part {number} does not match the uploaded bytes.", code=8014, field="response"
        )
    row.reported = True
    session.flush()


def _reported_etags(body_parts: Any) -> dict[int, str]:
    if body_parts is None:
        return {}
    if not isinstance(body_parts, list):
        raise BadRequest("'parts' must be a list of part reports.", code=8015, field="parts")
    out: dict[int, str] = {}
    for item in body_parts:
        number = item.get("part_number") if isinstance(item, dict) else None
        if isinstance(number, bool) or not isinstance(number, int):
            raise BadRequest("Each item of 'parts' needs an integer 'part_number'.", code=8015, field="parts")
        response = item.get("response")
        headers = response.get("headers") if isinstance(response, dict) else None
        etag = headers.get("ETag") if isinstance(headers, dict) else None
        out[number] = etag.strip('"') if isinstance(etag, str) else ""
    return out


def ready_data(session: Session, settings: Settings, upload: Upload, body_parts: Any) -> Path:
    """The upload's data file, after checking that every part arrived and matches any reported ETag."""
    count = part_count(upload.size, upload.part_size)
    have = {p.part_number: p for p in parts(session, upload.id)}
    missing = [n for n in range(1, count + 1) if n not in have]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise BadRequest(
            f"Cannot complete upload: {len(missing)} part(s) missing: {shown}.", code=8007, field="parts"
        )
    for number, etag in _reported_etags(body_parts).items():
        if number in have and etag and etag != have[number].etag:
            raise BadRequest(
                f"ETag of part {number} does not match the uploaded bytes.", code=8007, field="parts"
            )
    path = data_path(settings, upload.id)
    if upload.size and (not path.is_file() or path.stat().st_size != upload.size):
        raise BadRequest("The uploaded data is incomplete on disk; upload the parts again.", code=8007)
    return path


def assemble(store: LocalBlobStore, path: Path, upload: Upload, etags: dict[int, str]) -> tuple[str, int]:
    """Rename the data file into the blob store (no second copy of the bytes), keyed by the digest
    the upload's ``DigestCursor`` computed, finishing whatever parts it has not hashed yet."""
    return store.put_file(path, move=True, digest=DIGESTS.finish(upload, path, etags))


def finish(
    session: Session, user: User, upload_id: str, blob_key: str | None, size: int
) -> tuple[File, Project, str | None]:
    """Create (or overwrite) the file and forget the upload. Returns the file, its project and the blob
    key the file had before an overwrite (to collect once committed)."""
    upload = get(session, user, upload_id)
    if size != upload.size:
        raise BadRequest(f"Uploaded {size} bytes but the upload declared {upload.size}.", code=8007)
    project = session.get(Project, upload.project_id)
    parent = session.get(File, upload.parent_id)
    if project is None or parent is None:
        raise NotFound("The destination folder of this upload no longer exists.", code=5026, field="parent")
    projects.access_to(session, user, project, "write")
    previous = files.child(session, parent.id, upload.name)
    old_key = previous.blob_key if previous is not None and previous.type == "FILE" else None
    created = files.place_file(
        session,
        project=project,
        parent=parent,
        name=upload.name,
        blob_key=blob_key,
        size=size,
        conflict="overwrite" if upload.overwrite else "error",
    )
    session.execute(delete(UploadPart).where(UploadPart.upload_id == upload.id))
    session.delete(upload)
    session.flush()
    return created, project, old_key


def purge_stale(session: Session, max_age: timedelta = STALE_AFTER) -> list[str]:
    """Forget uploads started longer than ``max_age`` ago (abandoned by their client); returns their
    ids so that the caller removes their bytes once committed."""
    cutoff = utcnow() - max_age
    ids = list(session.scalars(select(Upload.id).where(Upload.initiated < cutoff).limit(100)))
    if ids:
        session.execute(delete(UploadPart).where(UploadPart.upload_id.in_(ids)))
        session.execute(delete(Upload).where(Upload.id.in_(ids)))
    return ids


def abort(session: Session, user: User, upload_id: str) -> None:
    upload = get(session, user, upload_id)
    session.execute(delete(UploadPart).where(UploadPart.upload_id == upload.id))
    session.delete(upload)
    session.flush()


def remove_parts(settings: Settings, upload_id: str) -> None:
    shutil.rmtree(part_dir(settings, upload_id), ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# Writing parts, and the blob digest computed while they arrive

HASH_CHUNK = 1024 * 1024
SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Any:
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None  # not Linux: the fsync on completion then flushes everything
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return func


_SYNC_FILE_RANGE = _load_sync_file_range()


def write_chunks(fd: int, md5: Any, chunks: list[bytes], offset: int) -> int:
    """Hash and write received chunks at ``offset`` (run off the event loop: both release the GIL)."""
    for chunk in chunks:
        md5.update(chunk)
    end = offset + sum(map(len, chunks))
    while offset < end:
        written = os.pwritev(fd, chunks, offset)
        offset += written
        if offset < end:  # a short write: drop what went out and write the rest
            rest, skip = [], written
            for chunk in chunks:
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                rest.append(chunk[skip:])
                skip = 0
            chunks = rest
    return end


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a finished part to disk now (without waiting), so that the fsync on completion
    finds little left to flush instead of a whole upload's dirty pages."""
    if _SYNC_FILE_RANGE is not None and length > 0:
        _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class DigestCursor:
    """The SHA-256 of one upload's data file, advanced part by part in order as parts arrive.

    Parts land in any order; once part ``next_part`` is recorded, a background thread hashes its byte
    range (from the page cache) and moves on. A PUT that starts on a part already hashed or being
    hashed invalidates the cursor, and completion then checks that the ETags it hashed are those the
    database recorded (a part re-sent through another server process), else hashes from scratch.
    """

    def __init__(self, upload: Upload, path: Path) -> None:
        self.upload_id = upload.id
        self.part_size = upload.part_size
        self.size = upload.size
        self.count = part_count(upload.size, upload.part_size)
        self.path = path
        self.sha = hashlib.sha256()
        self.next_part = 1
        self.hashed: dict[int, str] = {}
        self.ready: dict[int, str] = {}
        self.writing: dict[int, int] = {}
        self.hashing: int | None = None
        self.valid = True
        self.running: threading.Event | None = None
        self.lock = threading.Lock()

    def _part_range(self, number: int) -> tuple[int, int]:
        start = (number - 1) * self.part_size
        return start, min(self.part_size, self.size - start)

    def writing_part(self, number: int) -> None:
        with self.lock:
            self.writing[number] = self.writing.get(number, 0) + 1
            self.ready.pop(number, None)
            if number < self.next_part or number == self.hashing:
                self.valid = False

    def wrote_part(self, number: int, etag: str | None) -> bool:
        """Returns True when a hashing run should start (the caller submits ``run``)."""
        with self.lock:
            left = self.writing.get(number, 1) - 1
            if left:
                self.writing[number] = left
            else:
                self.writing.pop(number, None)
            if etag is not None and not left:
                self.ready[number] = etag
            return self._claim()

    def _claim(self) -> bool:
        if self.running is not None or not self.valid or self.next_part not in self.ready:
            return False
        self.running = threading.Event()
        return True

    def run(self) -> None:
        """Hash consecutive ready parts (one run at a time, on a worker thread). The run ends under the
        lock that ``wrote_part`` takes, so a part that becomes ready meanwhile always starts a new run."""
        try:
            with open(self.path, "rb") as fh:
                while self._hash_next(fh):
                    pass
        except OSError:
            with self.lock:
                self.valid = False
                self.hashing = None
                self._stop()

    def _stop(self) -> None:
        done, self.running = self.running, None
        if done is not None:
            done.set()

    def _hash_next(self, fh: BinaryIO) -> bool:
        with self.lock:
            number = self.next_part
            if not self.valid or number not in self.ready or number in self.writing:
                self._stop()
                return False
            etag = self.ready.pop(number)
            self.hashing = number
            part_sha = self.sha.copy()
        start, length = self._part_range(number)
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(HASH_CHUNK, length))
            if not chunk:
                break
            part_sha.update(chunk)
            length -= len(chunk)
        with self.lock:
            self.hashing = None
            if not self.valid or length:
                self.valid = False
                self._stop()
                return False
            self.sha, self.hashed[number], self.next_part = part_sha, etag, number + 1
            return True

    def digest(self, path: Path, etags: dict[int, str]) -> str:
        """The data file's SHA-256: the cursor's work where it still matches ``etags``, the rest read now."""
        while True:
            with self.lock:
                waiting = self.running
            if waiting is None:
                break
            waiting.wait()
        with self.lock:
            usable = self.valid and all(etags.get(n) == e for n, e in self.hashed.items())
            sha, first = (self.sha.copy(), self.next_part) if usable else (hashlib.sha256(), 1)
        with open(path, "rb") as fh:
            fh.seek((first - 1) * self.part_size)
            while chunk := fh.read(HASH_CHUNK):
                sha.update(chunk)
        return sha.hexdigest()


class DigestCursors:
    """The cursors of this process's uploads in progress (forgotten on completion or abort)."""

    LIMIT = 1000

    def __init__(self) -> None:
        self._cursors: dict[str, DigestCursor] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="upload-digest")

    def get(self, upload: Upload, path: Path) -> DigestCursor:
        with self._lock:
            cursor = self._cursors.get(upload.id)
            if cursor is None:
                if len(self._cursors) >= self.LIMIT:  # abandoned uploads: drop the oldest
                    self._cursors.pop(next(iter(self._cursors)))
                cursor = self._cursors[upload.id] = DigestCursor(upload, path)
            return cursor

    def wrote(self, cursor: DigestCursor, number: int, etag: str | None) -> None:
        if cursor.wrote_part(number, etag):
            self._pool.submit(cursor.run)

    def forget(self, upload_id: str) -> DigestCursor | None:
        with self._lock:
            return self._cursors.pop(upload_id, None)

    def finish(self, upload: Upload, path: Path, etags: dict[int, str]) -> str:
        cursor = self.forget(upload.id) or DigestCursor(upload, path)
        return cursor.digest(path, etags)


DIGESTS = DigestCursors()
