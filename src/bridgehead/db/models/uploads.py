"""ORM models of the files area beyond ``files`` itself: multipart uploads, the metadata index, async jobs.

They share this module (and migration 0002) because the files area owns them all.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, delete, event, insert
from sqlalchemy.orm import Mapped, Session, attributes, mapped_column

from bridgehead.db.base import Base, UTCDateTime, new_uuid, utcnow
from bridgehead.db.models.files import File


class Upload(Base):
    """A multipart upload in progress. Part bytes live on disk under ``data_dir/uploads/<id>/``."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    parent_id: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    part_size: Mapped[int] = mapped_column(BigInteger)
    overwrite: Mapped[bool] = mapped_column(Boolean, default=False)
    initiated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UploadPart(Base):
    """One part received by a signed PUT (``etag`` is the SHA-256 of its bytes); ``reported`` once the
    client has sent the part report."""

    __tablename__ = "upload_parts"

    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))
    reported: Mapped[bool] = mapped_column(Boolean, default=False)
    uploaded_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FileMetadata(Base):
    """One row per metadata key of a file, kept in step with ``files.metadata`` so that
    ``metadata.<key>=<value>`` filters use an index instead of scanning JSON."""

    __tablename__ = "file_metadata"
    __table_args__ = (Index("ix_file_metadata_key_value", "key", "value", "file_id"),)

    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AsyncJob(Base):
    """A bulk copy/move/delete job over files, with its per-item results."""

    __tablename__ = "async_file_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    result: Mapped[list[Any]] = mapped_column(default=list)
    total_files: Mapped[int] = mapped_column(Integer, default=0)
    completed_files: Mapped[int] = mapped_column(Integer, default=0)
    failed_files: Mapped[int] = mapped_column(Integer, default=0)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_on: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_on: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


# Deleting a file asks "does any other row still use this blob?": keep that an index lookup.
Index("ix_files_blob_key", File.blob_key)


# Longer values (only possible from non-API writers; the API caps values at 300 bytes) are not indexed,
# keeping PostgreSQL's btree entries well under its size limit.
MAX_INDEXED_VALUE = 1000


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@event.listens_for(Session, "after_flush")
def _index_metadata(session: Session, _ctx: Any) -> None:
    """Rewrite the ``file_metadata`` rows of every file whose metadata was assigned in this flush.

    Living at the ORM layer means every writer (uploads, tasks, volumes) keeps the index right
    without knowing it exists; deleted files lose their rows through the foreign key cascade.
    Metadata must be reassigned, not mutated in place, for the change to be seen (as for any JSON column).
    """
    changed: list[File] = []
    for obj in session.new:
        if isinstance(obj, File) and obj.metadata_:
            changed.append(obj)
    for obj in session.dirty:
        if isinstance(obj, File) and attributes.get_history(obj, "metadata_").has_changes():
            changed.append(obj)
    if not changed:
        return
    conn = session.connection()
    stale = [f.id for f in changed if f not in session.new]
    if stale:
        conn.execute(delete(FileMetadata).where(FileMetadata.file_id.in_(stale)))
    rows = [
        {"file_id": f.id, "key": str(k)[:255], "value": _as_text(v)}
        for f in changed
        for k, v in (f.metadata_ or {}).items()
        if v is not None and len(_as_text(v)) <= MAX_INDEXED_VALUE
    ]
    if rows:
        conn.execute(insert(FileMetadata), rows)
