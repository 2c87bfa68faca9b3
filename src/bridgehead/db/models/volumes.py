"""ORM models for volumes (tables are created by this module's own migration).

A volume is a named pointer at external storage (an S3 bucket or an allow-listed local directory);
its ``service`` JSON keeps the credentials, which are never returned on the wire. Imports and exports
share one ``transfers`` table so that one worker loop can claim either kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bridgehead.db.base import Base, UTCDateTime, utcnow

IMPORT = "IMPORT"
EXPORT = "EXPORT"

PENDING = "PENDING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
STATES = (PENDING, RUNNING, COMPLETED, FAILED)


class Volume(Base):
    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    access_mode: Mapped[str] = mapped_column(String(2), default="RW")
    # {type, bucket, prefix, endpoint, root, credentials{...}, properties{...}}
    service: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def sbg_id(self) -> str:
        return f"{self.owner}/{self.name}"


class VolumeMember(Base):
    """Like a project member, without ``execute``."""

    __tablename__ = "volume_members"
    __table_args__ = (UniqueConstraint("volume_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    read: Mapped[bool] = mapped_column(Boolean, default=True)
    copy: Mapped[bool] = mapped_column(Boolean, default=False)
    write: Mapped[bool] = mapped_column(Boolean, default=False)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)

    PERMISSIONS = ("read", "copy", "write", "admin")

    def permissions(self) -> dict[str, bool]:
        if self.admin:
            return dict.fromkeys(self.PERMISSIONS, True)
        return {p: bool(getattr(self, p)) for p in self.PERMISSIONS}


class Transfer(Base):
    """One import (volume object -> project file) or export (project file -> volume object)."""

    __tablename__ = "transfers"
    __table_args__ = (Index("ix_transfers_state_created", "state", "created_on"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The volume's ``owner/name`` is kept verbatim so the record still reads after the volume is gone.
    volume_id: Mapped[int | None] = mapped_column(
        ForeignKey("volumes.id", ondelete="SET NULL"), index=True, default=None
    )
    volume: Mapped[str] = mapped_column(String(200))
    location: Mapped[str] = mapped_column(Text)
    # Imports: the destination project (for the ``project`` filter); exports: the source file's project.
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True, default=None
    )
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    # Everything else the request said: destination, file, overwrite, autorename, copy_only, ...
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result_file: Mapped[str | None] = mapped_column(String(24), default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The process running it (a worker id): a restart or a take-over requeues only that owner's rows.
    claimed_by: Mapped[str | None] = mapped_column(String(128), index=True, default=None)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_on: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_on: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
