"""Task state transitions as small ordered rules (the Prefect server's pattern).

``transition`` first checks that the move is allowed, then runs every rule whose (from, to)
matches, in order. Each rule does one thing: stamp times, set the status message, compute the
durations, price the run. Batch parents are rolled up from their children by ``rollup``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bridgehead.db.base import utcnow
from bridgehead.db.models.tasks import (
    ABORTED,
    ABORTING,
    COMPLETED,
    CREATING,
    DRAFT,
    FAILED,
    QUEUED,
    RUNNING,
    TERMINAL,
    Task,
)
from bridgehead.domain.tasks import pricing

ALLOWED: dict[str, set[str]] = {
    DRAFT: {QUEUED},
    CREATING: {QUEUED, RUNNING, ABORTED, FAILED},
    QUEUED: {RUNNING, ABORTING, ABORTED, FAILED, COMPLETED},
    RUNNING: {RUNNING, QUEUED, ABORTING, COMPLETED, FAILED, ABORTED},
    ABORTING: {ABORTED, COMPLETED, FAILED},
    COMPLETED: set(),
    FAILED: set(),
    ABORTED: set(),
}
DEFAULT_MESSAGES = {
    QUEUED: "In queue",
    RUNNING: "Running",
    ABORTING: "Aborting",
    ABORTED: "Aborted",
    COMPLETED: "Completed",
    FAILED: "Failed",
}


class InvalidTransition(ValueError):
    pass


@dataclass
class Change:
    task: Task
    source: str
    target: str
    now: datetime
    message: str | None = None
    prices: pricing.PriceTable = field(default_factory=pricing.PriceTable)
    output_bytes: int = 0


Rule = tuple[frozenset[str], frozenset[str], Callable[[Change], None]]
ANY = frozenset(ALLOWED)


def _ms(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(0, int((end - start).total_seconds() * 1000))


def base_status(task: Task) -> dict[str, Any]:
    """Every key the single-task ``execution_status`` carries (ints and bools, never floats)."""
    current = dict(task.execution_status or {})
    out: dict[str, Any] = {
        "message": current.get("message", ""),
        "steps_completed": int(current.get("steps_completed", 0)),
        "steps_total": int(current.get("steps_total", 1)),
        "queued_duration": int(current.get("queued_duration", 0)),
        "running_duration": int(current.get("running_duration", 0)),
        "execution_duration": int(current.get("execution_duration", 0)),
        "duration": int(current.get("duration", 0)),
        "system_limit": False,
        "account_limit": False,
        "instance_init": False,
    }
    if current.get("memoized_from"):  # set by domain/memo.py when outputs were reused
        out["memoized_from"] = str(current["memoized_from"])
    return out


def stamp_queued(c: Change) -> None:
    c.task.queued_time = c.now
    c.task.claimed_by = None


def stamp_started(c: Change) -> None:
    if c.task.start_time is None:
        c.task.start_time = c.now


def mark_abort(c: Change) -> None:
    c.task.abort_requested = True


def stamp_finished(c: Change) -> None:
    t = c.task
    t.end_time = c.now
    if t.start_time is None:
        t.start_time = c.now


def set_message(c: Change) -> None:
    status = base_status(c.task)
    status["message"] = c.message or DEFAULT_MESSAGES.get(c.target, status["message"])
    if c.target == COMPLETED:
        status["steps_completed"] = status["steps_total"]
    c.task.execution_status = status


def durations(c: Change) -> None:
    t = c.task
    status = dict(t.execution_status)
    queued_at = t.queued_time or t.start_time
    status["queued_duration"] = _ms(queued_at, t.start_time)
    status["running_duration"] = _ms(t.start_time, t.end_time)
    status["execution_duration"] = status["running_duration"]
    status["duration"] = _ms(queued_at, t.end_time)
    t.execution_status = status


def set_price(c: Change) -> None:
    t = c.task
    if t.batch:
        return  # a parent's price is the sum of its children (rollup)
    seconds = (t.end_time - t.start_time).total_seconds() if t.end_time and t.start_time else 0.0
    t.price = pricing.price(c.prices, t.cores, seconds, c.output_bytes)


RULES: list[Rule] = [
    (frozenset({DRAFT}), frozenset({QUEUED}), stamp_queued),
    (ANY, frozenset({RUNNING}), stamp_started),
    (ANY, frozenset({ABORTING}), mark_abort),
    (ANY, frozenset(TERMINAL), stamp_finished),
    (ANY, ANY, set_message),
    (ANY, frozenset(TERMINAL), durations),
    (ANY, frozenset(TERMINAL), set_price),
]


def transition(
    task: Task,
    target: str,
    *,
    message: str | None = None,
    prices: pricing.PriceTable | None = None,
    output_bytes: int = 0,
    now: datetime | None = None,
) -> None:
    source = task.status
    if target not in ALLOWED.get(source, set()):
        raise InvalidTransition(f"task {task.id}: {source} -> {target} is not allowed")
    change = Change(
        task, source, target, now or utcnow(), message, prices or pricing.PriceTable(), output_bytes
    )
    task.status = target
    for sources, targets, rule in RULES:
        if source in sources and target in targets:
            rule(change)


def parent_status(counts: dict[str, int], abort_requested: bool) -> str:
    """A parent runs while any child is unfinished; then FAILED beats ABORTED beats COMPLETED."""
    unfinished = sum(n for s, n in counts.items() if s not in TERMINAL)
    if unfinished:
        return ABORTING if abort_requested else RUNNING
    if abort_requested:
        return ABORTED
    if counts.get(FAILED):
        return FAILED
    if counts.get(ABORTED):
        return ABORTED
    return COMPLETED


def rollup(session: Session, parent: Task, now: datetime | None = None) -> None:
    """Derive a batch parent's counters, status, times and price from its children."""
    rows = session.execute(
        select(Task.status, func.count()).where(Task.parent_id == parent.id).group_by(Task.status)
    ).all()
    counts = {str(s): int(n) for s, n in rows}
    status = parent_status(counts, parent.abort_requested)
    messages = {
        RUNNING: "Running",
        ABORTING: "Aborting",
        COMPLETED: "Completed",
        FAILED: "Failed",
        ABORTED: "Aborted",
    }
    es = {
        "message": messages.get(status, "Running"),
        "queued": counts.get(QUEUED, 0) + counts.get(DRAFT, 0) + counts.get(CREATING, 0),
        "running": counts.get(RUNNING, 0) + counts.get(ABORTING, 0),
        "completed": counts.get(COMPLETED, 0),
        "failed": counts.get(FAILED, 0),
        "aborted": counts.get(ABORTED, 0),
        "system_limit": False,
        "account_limit": False,
        "instance_init": False,
    }
    now = now or utcnow()
    if status in TERMINAL and parent.status not in TERMINAL:
        parent.end_time = now
    parent.status = status
    queued_at = parent.queued_time or parent.start_time
    end = parent.end_time or now
    es["queued_duration"] = _ms(queued_at, parent.start_time)
    es["running_duration"] = _ms(parent.start_time, end)
    es["execution_duration"] = es["running_duration"]
    es["duration"] = _ms(queued_at, end)
    parent.execution_status = es
    if status in TERMINAL:
        prices = list(session.scalars(select(Task.price).where(Task.parent_id == parent.id)))
        parent.price = pricing.total(prices)


def abort_children(session: Session, parent_id: str, now: datetime | None = None) -> None:
    """Children nobody claimed end ABORTED at once; claimed or running ones go to ABORTING."""
    now = now or utcnow()
    session.execute(
        update(Task)
        .where(Task.parent_id == parent_id, Task.status == QUEUED, Task.claimed_by.is_(None))
        .values(status=ABORTED, end_time=now, abort_requested=True, execution_status={"message": "Aborted"})
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Task)
        .where(Task.parent_id == parent_id, Task.status.in_([QUEUED, RUNNING]))
        .values(status=ABORTING, abort_requested=True, execution_status={"message": "Aborting"})
        .execution_options(synchronize_session=False)
    )
