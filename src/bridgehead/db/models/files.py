from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bridgehead.db.base import Base, UTCDateTime, new_file_id, utcnow

FILE = "FILE"
FOLDER = "FOLDER"


class File(Base):
    """A file or folder in a project. Every project has one root folder (``parent_id`` NULL)."""

    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_parent_name", "parent_id", "name"),
        Index("ix_files_project_parent", "project_id", "parent_id"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_file_id)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(24), default=None)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(8), default=FILE)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # Key of the content in the blob store (None for folders and empty files).
    blob_key: Mapped[str | None] = mapped_column(String(128), default=None)
    origin_task: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    storage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_folder(self) -> bool:
        return self.type == FOLDER


class FolderCount(Base):
    """How many direct children a folder has: the unfiltered total of a listing without a COUNT over
    the folder (tens of milliseconds at 100,000 files).

    Kept by database triggers on ``files`` (migration 0009) in the writer's own transaction, so every
    writer (ORM, bulk inserts, cascades) keeps it exact. A folder without children has no row.
    """

    __tablename__ = "folder_counts"

    folder_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    children: Mapped[int] = mapped_column(BigInteger)
