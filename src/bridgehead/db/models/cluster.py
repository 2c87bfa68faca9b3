"""ORM models for cluster deployments: the liveness of ``bridgehead worker`` processes.

Each worker keeps one row fresh (``heartbeat_at``). Task ownership lives on the task row
(``tasks.claimed_by`` = the worker id); a worker whose heartbeat is older than the timeout is
presumed dead, and the first live worker to delete its row takes over its tasks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bridgehead.db.base import Base, UTCDateTime, utcnow


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    engine: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
