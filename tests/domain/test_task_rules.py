"""Task rules one at a time: transitions, parent roll-up, batching groups, naming and pricing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridgehead.db.models.tasks import Task
from bridgehead.domain.cwl import secondary_name
from bridgehead.domain.errors import BadRequest
from bridgehead.domain.tasks import batching, pricing, rules

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def task(status: str = "DRAFT", **kw: object) -> Task:
    t = Task(
        id="00000000-0000-4000-8000-000000000001",
        status=status,
        cores=2,
        memory=512,
        batch=False,
        execution_status={},
        abort_requested=False,
        **kw,
    )
    return t


def test_draft_queued_running_completed_stamps_times_durations_and_price() -> None:
    t = task()
    rules.transition(t, "QUEUED", now=T0)
    assert t.queued_time == T0 and t.execution_status["message"] == "In queue"
    rules.transition(t, "RUNNING", now=T0 + timedelta(seconds=2))
    assert t.start_time == T0 + timedelta(seconds=2)
    rules.transition(
        t,
        "COMPLETED",
        now=T0 + timedelta(seconds=1802),
        prices=pricing.PriceTable(cpu_hour=1.0),
        output_bytes=0,
    )
    es = t.execution_status
    assert (es["queued_duration"], es["running_duration"], es["duration"]) == (2000, 1_800_000, 1_802_000)
    assert es["steps_completed"] == es["steps_total"] == 1 and es["message"] == "Completed"
    assert t.price == {
        "currency": "USD",
        "amount": "1.00",
        "breakdown": {"storage": "0.00", "computation": "1.00"},
    }
    assert t.end_time == T0 + timedelta(seconds=1802)


@pytest.mark.parametrize(
    ("source", "target"),
    [("DRAFT", "RUNNING"), ("COMPLETED", "QUEUED"), ("ABORTED", "RUNNING"), ("FAILED", "COMPLETED")],
)
def test_forbidden_transitions_raise(source: str, target: str) -> None:
    with pytest.raises(rules.InvalidTransition):
        rules.transition(task(source), target)


def test_abort_marks_request_and_keeps_failure_message() -> None:
    t = task("RUNNING", start_time=T0)
    rules.transition(t, "ABORTING", now=T0)
    assert t.abort_requested and t.execution_status["message"] == "Aborting"
    f = task("RUNNING", start_time=T0)
    rules.transition(f, "FAILED", message="tool exited 3", now=T0)
    assert f.execution_status["message"] == "tool exited 3"


@pytest.mark.parametrize(
    ("counts", "abort", "expected"),
    [
        ({"RUNNING": 1, "COMPLETED": 3}, False, "RUNNING"),
        ({"QUEUED": 1}, True, "ABORTING"),
        ({"COMPLETED": 3}, False, "COMPLETED"),
        ({"COMPLETED": 2, "FAILED": 1, "ABORTED": 1}, False, "FAILED"),
        ({"COMPLETED": 2, "ABORTED": 1}, False, "ABORTED"),
        ({"COMPLETED": 2, "FAILED": 1}, True, "ABORTED"),
    ],
)
def test_parent_status_from_children(counts: dict[str, int], abort: bool, expected: str) -> None:
    assert rules.parent_status(counts, abort) == expected


def test_criteria_groups_in_order_and_singles_for_missing_fields() -> None:
    items = [{"class": "File", "path": f"{i:024x}", "name": f"f{i}"} for i in range(4)]
    meta = {
        items[0]["path"]: {"s": "A", "l": "1"},
        items[1]["path"]: {"s": "B", "l": "1"},
        items[2]["path"]: {"s": "A", "l": "1"},
        items[3]["path"]: {"s": "A"},
    }
    got = batching.groups(items, {"type": "CRITERIA", "criteria": ["metadata.s", "metadata.l"]}, meta)
    assert [(g["value"], [m["name"] for m in members]) for members, g in got] == [
        ("A, 1", ["f0", "f2"]),
        ("B, 1", ["f1"]),
        ("f3", ["f3"]),
    ]
    assert got[0][1]["fields"] == {"metadata.s": "A", "metadata.l": "1"}
    item = batching.groups(items[:2], {"type": "ITEM"}, {})
    assert [g for _, g in item] == [{"value": "f0", "fields": {}}, {"value": "f1", "fields": {}}]


def test_batch_by_checks_name_the_field() -> None:
    assert batching.check_batch_by({"type": "item"}) == {"type": "ITEM"}
    with pytest.raises(BadRequest) as bad_type:
        batching.check_batch_by({"type": "row"})
    assert bad_type.value.code == 7020 and bad_type.value.field == "batch_by.type"
    with pytest.raises(BadRequest) as bad_key:
        batching.check_batch_by({"type": "CRITERIA", "criteria": ["metadata.a", "sample"]})
    assert bad_key.value.field == "batch_by.criteria[1]"
    with pytest.raises(BadRequest) as empty:
        batching.check_batch_by({"type": "CRITERIA", "criteria": []})
    assert empty.value.code == 7019


def test_secondary_file_names() -> None:
    assert secondary_name("x.bam", ".bai") == "x.bam.bai"
    assert secondary_name("x.bam", "^.bai") == "x.bai"
    assert secondary_name("x.vcf.gz", "^^.idx") == "x.idx"


def test_price_sums_children() -> None:
    one = pricing.price(pricing.PriceTable(cpu_hour=2.0, gb_month=1.0), 1, 3600, 2_000_000_000)
    assert one["breakdown"] == {"storage": "2.00", "computation": "2.00"} and one["amount"] == "4.00"
    assert pricing.total([one, one, None])["amount"] == "8.00"


def test_expand_then_abort_children_and_roll_up_on_a_real_session() -> None:
    from sqlalchemy import create_engine, select, update
    from sqlalchemy.orm import Session

    from bridgehead.db.base import Base
    from bridgehead.domain.tasks import execution

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    items = [{"class": "File", "path": f"{i:024x}", "name": f"f{i}.bam"} for i in range(5)]
    with Session(engine) as s, s.begin():
        parent = Task(
            id="00000000-0000-4000-8000-0000000000aa",
            project_id=1,
            name="p",
            app_id="o/p/a/0",
            status="QUEUED",
            created_by="u",
            batch=True,
            batch_input="reads",
            batch_by={"type": "ITEM"},
            inputs={"reads": items, "n": 3},
            outputs={},
            execution_status={},
            cores=1,
            memory=64,
            abort_requested=False,
            expanded=False,
            errors=[],
            warnings=[],
            jobs=[],
            execution_settings={},
            created_time=T0,
        )
        s.add(parent)
        s.flush()
        assert execution.expand(s, parent) == 5
        children = list(s.scalars(select(Task).where(Task.parent_id == parent.id).order_by(Task.batch_index)))
        assert children[0].batch_group == {"value": "f0.bam", "fields": {}}
        assert children[2].inputs == {"reads": items[2], "n": 3} and children[2].engine_handle is None
        assert parent.status == "RUNNING" and parent.execution_status["queued"] == 5
        children[0].status, children[0].claimed_by = "RUNNING", "w"
        children[1].status = "COMPLETED"
        s.flush()
        rules.transition(parent, "ABORTING")
        rules.abort_children(s, parent.id)
        rules.rollup(s, parent)
        s.expire_all()
        statuses = [
            c.status
            for c in s.scalars(select(Task).where(Task.parent_id == parent.id).order_by(Task.batch_index))
        ]
        assert statuses == ["ABORTING", "COMPLETED", "ABORTED", "ABORTED", "ABORTED"]
        assert parent.status == "ABORTING"
        s.execute(
            update(Task)
            .where(Task.status == "ABORTING", Task.parent_id == parent.id)
            .values(status="ABORTED")
        )
        rules.rollup(s, parent)
        assert parent.status == "ABORTED" and parent.execution_status["aborted"] == 4
        assert parent.execution_status["completed"] == 1 and parent.end_time is not None
