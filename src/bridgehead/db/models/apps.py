from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bridgehead.db.base import Base, UTCDateTime, utcnow
from bridgehead.db.models.projects import Project


class App(Base):
    """An app ``owner/project/name``; its revisions hold the CWL."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sbg_id: Mapped[str] = mapped_column(String(400), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    latest_revision: Mapped[int] = mapped_column(Integer, default=0)
    # The app this one was copied from (``owner/project/name/rev``), for sync.
    copy_of: Mapped[str | None] = mapped_column(String(400), default=None)
    # How the copy was made (clone, direct, clone_direct, transient): decides whom ``sync`` follows.
    copy_strategy: Mapped[str | None] = mapped_column(String(32), default=None)
    # The latest revision's label and doc, kept on the app so ``GET /apps?q=`` never reads raw CWL.
    label: Mapped[str | None] = mapped_column(String(1000), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship()
    revisions: Mapped[list[AppRevision]] = relationship(back_populates="app", cascade="all, delete-orphan")


class AppRevision(Base):
    __tablename__ = "app_revisions"
    __table_args__ = (UniqueConstraint("app_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    raw: Mapped[dict[str, Any]] = mapped_column()
    # Inputs/outputs summary computed once at install (ids, types, required, secondaryFiles, batching).
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(64))
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    app: Mapped[App] = relationship(back_populates="revisions")
