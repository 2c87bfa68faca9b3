"""ORM model for tasks: single tasks, batch parents and their children share one table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bridgehead.db.base import Base, UTCDateTime, new_uuid, utcnow

DRAFT = "DRAFT"
CREATING = "CREATING"
QUEUED = "QUEUED"
RUNNING = "RUNNING"
ABORTING = "ABORTING"
ABORTED = "ABORTED"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
STATUSES = (DRAFT, CREATING, QUEUED, RUNNING, ABORTING, ABORTED, COMPLETED, FAILED)
TERMINAL = (COMPLETED, FAILED, ABORTED)


class Task(Base):
    __tablename__ = "tasks"
    # project_id, status and parent_id are looked up through the composite indexes they lead (0013).
    __table_args__ = (
        Index("ix_tasks_status_claimed", "status", "claimed_by"),
        Index("ix_tasks_project_created_id", "project_id", "created_time", "id"),
        Index("ix_tasks_parent_status", "parent_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # The app id with its revision (``owner/project/app/rev``) and the revision row it came from.
    app_id: Mapped[str] = mapped_column(String(400))
    app_revision_id: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    created_by: Mapped[str] = mapped_column(String(64))
    executed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    created_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    queued_time: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    batch: Mapped[bool] = mapped_column(Boolean, default=False)
    batch_input: Mapped[str | None] = mapped_column(String(255), default=None)
    batch_by: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    batch_group: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Batching was switched off explicitly (``batch: false``), so the app default does not apply.
    batch_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # A batch parent's children exist once this is set (they are created when the parent runs).
    expanded: Mapped[bool] = mapped_column(Boolean, default=False)
    use_interruptible_instances: Mapped[bool] = mapped_column(Boolean, default=False)
    execution_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_location: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    execution_status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    price: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Clone/rerun source (``origin_id`` on the wire).
    origin_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    engine: Mapped[str | None] = mapped_column(String(16), default=None)
    engine_handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Which dispatcher/worker owns the run; set by an atomic UPDATE so two workers never share a task.
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    abort_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cores: Mapped[int] = mapped_column(Integer, default=1)
    memory: Mapped[int] = mapped_column(Integer, default=1024)  # MiB
    # Project folder that receives the outputs (created when the task runs).
    output_folder: Mapped[str | None] = mapped_column(String(24), default=None)
    # Jobs for execution_details: [{name, status, start_time, end_time, command_line, logs{name: file id}}].
    jobs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Position of a child inside its batch (stable listing order).
    batch_index: Mapped[int | None] = mapped_column(Integer, default=None)


class ProjectTaskCount(Base):
    """How many tasks a project has: the total of an unfiltered project listing without a COUNT over
    the project's tasks. Kept by database triggers on ``tasks`` (migration 0011) in the writer's own
    transaction; a project without tasks has no row.
    """

    __tablename__ = "project_task_counts"

    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tasks: Mapped[int] = mapped_column(BigInteger)
