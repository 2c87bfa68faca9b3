"""ORM models for execution (tables are created by this module's own migration)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bridgehead.db.base import Base, UTCDateTime, utcnow


class MemoEntry(Base):
    """A completed run whose outputs an identical later job may reuse (``use_memoization``).

    ``key`` is a digest of the app revision's CWL, the content (blob keys) and names of every input
    file, the other input values and the execution settings; ``outputs`` are the source task's outputs
    as stored on the task (file ids), copied into the reusing task's project on a hit.
    """

    __tablename__ = "execution_memos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)
    app_id: Mapped[str] = mapped_column(String(400))
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    hits: Mapped[int] = mapped_column(Integer, default=0)
