"""Multipart uploads: the rows that track an upload, and its bytes on disk.

Signed PUTs write each part straight to its offset in one file, ``data_dir/uploads/<upload id>/data``
(any order, in parallel, re-sendable), so the bytes are written once: completing renames that file
into the blob store instead of concatenating copies. Each PUT hashes its part with SHA-256 as it
streams (the part's ETag), and the blob key is derived from those digests (``blob_key``), so
completing reads nothing back. That holds because a part row exists only while the bytes on disk
are the ones its digest describes: a PUT holds a lock on its part's range and deletes the part's
row before writing (``forget_part``), and records it again only once every byte is written. The
blob is made outside the write transaction, so completion is three steps driven by the API layer:
``ready_data`` (checks), ``assemble`` (bytes), ``finish`` (rows).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import math
import os
import re
import secrets
import shutil
import struct
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

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
    """Rename the data file into the blob store (no second copy of the bytes and no read of it),
    keyed by the digests its parts were given as they arrived."""
    return store.put_file(path, move=True, key=blob_key(upload, etags))


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
# Writing parts, one writer per part at a time, and the blob key taken from the parts' digests

SYNC_FILE_RANGE_WRITE = 2
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _load_sync_file_range() -> Any:
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None  # not Linux: the fsync on completion then flushes everything
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return func


_SYNC_FILE_RANGE = _load_sync_file_range()


def write_chunks(fd: int, sha: Any, chunks: list[bytes], offset: int) -> int:
    """Hash and write received chunks at ``offset``, then start writing them to disk (run off the event
    loop: all three release the GIL).

    Writeback starts per batch (without waiting for it), so the disk works while the upload streams
    and the fsync on completion finds only the last few MiB dirty, not the last parts in flight."""
    for chunk in chunks:
        sha.update(chunk)
    start = offset
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
    if _SYNC_FILE_RANGE is not None and end > start:
        _SYNC_FILE_RANGE(fd, start, end - start, SYNC_FILE_RANGE_WRITE)
    return end


_THREAD_LOCKED: set[tuple[str, int]] = set()
_THREAD_LOCK = threading.Lock()


def lock_part(fd: int, upload: Upload, number: int) -> None:
    """Take the part's byte range for this PUT alone, or refuse with 409.

    Completion trusts each recorded part digest to describe the bytes on disk, so two PUTs of one
    part must never interleave their writes. Linux open-file-description locks hold across server
    processes sharing the data dir and go away with the descriptor (also when a process dies);
    elsewhere a per-process set stands in (one server process is the laptop case)."""
    start, length = part_offset(upload, number), expected_size(upload, number)
    if hasattr(fcntl, "F_OFD_SETLK"):
        request = struct.pack("@hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, start, max(length, 1), 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
    else:
        with _THREAD_LOCK:
            if (upload.id, number) not in _THREAD_LOCKED:
                _THREAD_LOCKED.add((upload.id, number))
                return
    raise Conflict(
        f"Part {number} is being uploaded by another request; send it again once that one ends.",
        code=8014,
        field="part_number",
    )


def unlock_part(upload: Upload, number: int) -> None:
    """Only the per-process fallback needs this; OFD locks end when the descriptor is closed."""
    if not hasattr(fcntl, "F_OFD_SETLK"):
        with _THREAD_LOCK:
            _THREAD_LOCKED.discard((upload.id, number))


def blob_key(upload: Upload, etags: dict[int, str]) -> str | None:
    """The blob key implied by the parts' SHA-256 digests (their ETags), without reading the data.

    One part: its digest, which is the content's SHA-256 (the key every other way in uses). Several:
    the SHA-256 of the size, the part size and the part digests, suffixed ``-<parts>`` like S3's
    multipart ETags. The suffix keeps these keys apart from plain SHA-256 keys, so no file can be
    crafted whose plain key equals another content's multipart key. Equal contents uploaded with the
    same part size still share one blob. ``None`` when a digest is not a SHA-256 (a part recorded
    by an older version): the caller then hashes the file.
    """
    count = part_count(upload.size, upload.part_size)
    digests = [etags.get(n, "") for n in range(1, count + 1)]
    if not all(_HEX64.fullmatch(d) for d in digests):
        return None
    if count == 1:
        return digests[0]
    tree = hashlib.sha256(f"bridgehead-multipart {upload.size} {upload.part_size}\n".encode())
    for digest in digests:
        tree.update(bytes.fromhex(digest))
    return f"{tree.hexdigest()}-{count}"
