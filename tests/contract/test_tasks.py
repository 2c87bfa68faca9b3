"""The task seeds driven through the unmodified sevenbridges-python client against a live server."""

from __future__ import annotations

from typing import Any

import pytest
import sevenbridges as sbg
from sevenbridges.errors import BadRequest, NotFound, TaskValidationError

from bridgehead.embedded import EmbeddedServer
from tests.conftest import user_api
from tests.support.taskapps import add_file

TOOL: dict[str, Any] = {
    "cwlVersion": "v1.2",
    "class": "CommandLineTool",
    "baseCommand": ["cat"],
    "inputs": {
        "reads": {"type": "File[]"},
        "reference": {"type": "File?", "secondaryFiles": [".fai"]},
        "threads": {"type": "int?"},
        "label": {"type": "string?"},
    },
    "outputs": {
        "result": {"type": "File", "outputBinding": {"glob": "out.txt"}},
        "count": {"type": "int", "outputBinding": {"outputEval": "$(1)"}},
    },
    "requirements": [{"class": "InlineJavascriptRequirement"}],
}
WAIT = 0.2
LONG = {"fake_duration": 120}


@pytest.fixture(scope="module")
def project(api: sbg.Api) -> Any:
    return api.projects.create(name="task seeds")


@pytest.fixture(scope="module")
def app(api: sbg.Api, project: Any) -> Any:
    return api.apps.install_app(id=f"{project.id}/catter", raw=TOOL)


@pytest.fixture(scope="module")
def reads(server: EmbeddedServer, project: Any) -> list[Any]:
    meta = [
        {"sample_id": "S1", "library_id": "L1"},
        {"sample_id": "S1", "library_id": "L1"},
        {"sample_id": "S2", "library_id": "L1"},
        {"sample_id": "S2"},
    ]
    return [
        add_file(server, project.id, f"r{i}.fastq", f"r{i}\n".encode(), metadata=m)
        for i, m in enumerate(meta)
    ]


def files(api: sbg.Api, ids: list[str]) -> list[Any]:
    return [api.files.get(i) for i in ids]


def test_create_draft_has_seed_fields(api: sbg.Api, project: Any, app: Any, reads: list[str]) -> None:
    task = api.tasks.create(
        name="draft",
        project=project,
        app=app,
        inputs={"reads": files(api, reads[:2])},
        description="my draft task",
        interruptible=True,
    )
    assert task.status == "DRAFT" and task.batch is False
    assert task.app == f"{app.id}/0"
    assert task.type == "v2" and task.description == "my draft task"
    assert task.use_interruptible_instances is True
    assert task.created_by == "tester" and task.created_time is not None
    assert task.errors == [] and task.price.amount == 0.0 and task.price.currency == "USD"
    assert [f.name for f in task.inputs["reads"]] == ["r0.fastq", "r1.fastq"]
    assert task.inputs["threads"] is None
    assert set(task.outputs) == {"result", "count"}
    fetched = api.tasks.get(task.id)
    assert fetched.name == "draft" and fetched.project == project.id


def test_create_and_run_then_wait_completes(api: sbg.Api, project: Any, app: Any, reads: list[str]) -> None:
    task = api.tasks.create(
        name="go", project=project, app=app, inputs={"reads": files(api, reads[:1])}, run=True
    )
    assert task.status in ("QUEUED", "RUNNING", "COMPLETED")
    task.wait(period=WAIT)
    assert task.status == "COMPLETED", task.execution_status.message
    out = task.outputs["result"]
    assert isinstance(out, sbg.File) and out.name == "result.txt"
    assert api.files.get(out.id).origin.task == task.id
    assert task.outputs["count"] == 1
    es = task.execution_status
    assert es.steps_completed == es.steps_total == 1 and es.message == "Completed"
    assert isinstance(es.duration, int) and es.system_limit is False
    assert task.start_time is not None and task.end_time is not None and task.executed_by == "tester"
    details = task.get_execution_details()
    assert details.status == "COMPLETED" and len(details.jobs) == 1
    job = details.jobs[0]
    assert job.status == "DONE" and job.retried is False and job.command_line
    log = job.logs["stdout.log"]
    assert isinstance(log, sbg.File) and api.files.get(log.id).origin.task == task.id


def test_run_true_with_invalid_inputs_raises_with_the_draft(api: sbg.Api, project: Any, app: Any) -> None:
    with pytest.raises(TaskValidationError) as info:
        api.tasks.create(name="bad", project=project, app=app, inputs={"threads": "x"}, run=True)
    task = info.value.task
    assert task.status == "DRAFT"
    assert {(e["type"].rsplit("/", 1)[-1], e["input_id"]) for e in task.errors} == {
        ("required", "reads"),
        ("schema", "threads"),
    }


def test_every_validation_error_type(server: EmbeddedServer, api: sbg.Api, project: Any, app: Any) -> None:
    other = api.projects.create(name="other place")
    foreign = add_file(server, other.id, "elsewhere.fastq")
    odd = add_file(server, project.id, "with space.fastq")
    ref = add_file(server, project.id, "genome.fa")
    task = api.tasks.create(
        name="v",
        project=project,
        app=app,
        inputs={
            "reads": [api.files.get(foreign), api.files.get(odd)],
            "reference": api.files.get(ref),
            "threads": 1.5,
        },
    )
    seen = {(e["type"], e["input_id"]) for e in task.errors}
    assert seen == {
        ("error/task_validation/input/files_missing", "reads"),
        ("error/task_validation/input/invalid_name_files", "reads"),
        ("error/task_validation/input/secondary_files_missing", "reference"),
        ("error/task_validation/input/schema", "threads"),
    }
    assert all(e["message"] for e in task.errors)
    with pytest.raises(BadRequest) as info:
        task.run()
    assert info.value.code == 7024


def test_batch_item_children_and_parent_rollup(
    api: sbg.Api, project: Any, app: Any, reads: list[str]
) -> None:
    task = api.tasks.create(
        name="per item",
        project=project,
        app=app,
        inputs={"reads": files(api, reads[:3])},
        batch_input="reads",
        batch_by={"type": "item"},
        run=True,
    )
    assert task.batch is True and task.batch_by["type"] == "ITEM"
    task.wait(period=WAIT)
    assert task.status == "COMPLETED"
    children = list(task.get_batch_children().all())
    assert len(children) == 3
    assert sorted(c.batch_group.value for c in children) == ["r0.fastq", "r1.fastq", "r2.fastq"]
    assert all(c.parent == task.id and c.batch is False and c.status == "COMPLETED" for c in children)
    assert all(len(c.inputs["reads"]) == 1 for c in children)
    es = task.execution_status
    assert (es.completed, es.failed, es.queued, es.running, es.aborted) == (3, 0, 0, 0, 0)
    assert api.tasks.get(task.id).get_execution_details().jobs == []
    assert len(list(api.tasks.query(parent=task.id).all())) == 3


def test_batch_criteria_groups_by_metadata(api: sbg.Api, project: Any, app: Any, reads: list[str]) -> None:
    task = api.tasks.create(
        name="by sample",
        project=project,
        app=app,
        inputs={"reads": files(api, reads)},
        batch_input="reads",
        batch_by={"type": "CRITERIA", "criteria": ["metadata.sample_id", "metadata.library_id"]},
    )
    assert task.status == "DRAFT" and task.batch is True
    task.run()
    task.wait(period=WAIT)
    groups = {
        c.batch_group.value: (c.batch_group.fields, len(c.inputs["reads"]))
        for c in task.get_batch_children().all()
    }
    assert groups["S1, L1"] == ({"metadata.sample_id": "S1", "metadata.library_id": "L1"}, 2)
    assert groups["S2, L1"][1] == 1
    assert groups["r3.fastq"] == ({}, 1)  # lacks library_id: a group of its own
    assert len(groups) == 3


def test_batching_disabled_on_create_and_by_patch(
    api: sbg.Api, project: Any, app: Any, reads: list[str]
) -> None:
    plain = api.tasks.create(
        name="nobatch",
        project=project,
        app=app,
        inputs={"reads": files(api, reads[:2])},
        batch_input="reads",
        batch_by={"type": "ITEM"},
        disable_batch=True,
    )
    assert plain.batch is False and plain.batch_input is None
    batched = api.tasks.create(
        name="b",
        project=project,
        app=app,
        inputs={"reads": files(api, reads[:2])},
        batch_input="reads",
        batch_by={"type": "ITEM"},
    )
    assert batched.batch is True
    batched.batch_by = {"type": "CRITERIA", "criteria": ["metadata.sample_id"]}
    batched.batch_input = "reads"
    batched.save()
    assert batched.batch_by == {"type": "CRITERIA", "criteria": ["metadata.sample_id"]}
    batched.run(batch=False)
    assert batched.batch is False
    batched.wait(period=WAIT)
    assert batched.status == "COMPLETED"


def test_modify_rename_merge_and_refusal(api: sbg.Api, project: Any, app: Any, reads: list[str]) -> None:
    task = api.tasks.create(
        name="m", project=project, app=app, inputs={"reads": files(api, reads[:1]), "threads": 2}
    )
    task.name = "renamed"
    task.inputs["label"] = "hello"
    task.save()
    again = api.tasks.get(task.id)
    assert again.name == "renamed" and again.inputs["label"] == "hello" and again.inputs["threads"] == 2
    task.run()
    task.inputs["threads"] = 4
    with pytest.raises(BadRequest) as info:
        task.save()
    assert info.value.code == 7026
    task.wait(period=WAIT)
    with pytest.raises(BadRequest) as info:
        task.run()
    assert info.value.code == 7007


def test_clone_with_and_without_run_and_destinations(
    api: sbg.Api, project: Any, app: Any, reads: list[str]
) -> None:
    location = {
        "main_location": "/analysis/<task_name>_<task_id>",
        "nodes_location": {"count": {"output_location": "/counts"}},
    }
    source = api.tasks.create(
        name="src",
        project=project,
        app=app,
        inputs={"reads": files(api, reads[:1])},
        output_location=location,
        execution_settings={"use_memoization": True},
    )
    draft = source.clone(run=False)
    assert draft.id != source.id and draft.status == "DRAFT" and draft.origin == source.id
    assert draft.output_location == location and draft.execution_settings["use_memoization"] is True
    assert [f.id for f in draft.inputs["reads"]] == [reads[0]]
    ran = source.clone()
    ran.wait(period=WAIT)
    assert ran.status == "COMPLETED" and ran.origin == source.id
    assert api.tasks.get(source.id).status == "DRAFT"
    result = api.files.get(ran.outputs["result"].id)
    parent = api.files.get(result.parent)
    assert parent.name == f"src_{ran.id}"
    assert api.files.get(parent.parent).name == "analysis"
    assert [t.id for t in api.tasks.query(project=project, origin=source.id).all()] == sorted(
        [draft.id, ran.id], key=lambda i: i == draft.id
    )


def test_abort_single_task_and_batch_parent(api: sbg.Api, project: Any, app: Any, reads: list[str]) -> None:
    single = api.tasks.create(
        name="long",
        project=project,
        app=app,
        inputs={"reads": files(api, reads[:1])},
        execution_settings=LONG,
        run=True,
    )
    single.abort()
    assert single.status in ("ABORTING", "ABORTED")
    single.wait(period=WAIT)
    assert single.status == "ABORTED"
    with pytest.raises(BadRequest) as info:
        single.abort()
    assert info.value.code == 7011
    parent = api.tasks.create(
        name="long batch",
        project=project,
        app=app,
        inputs={"reads": files(api, reads)},
        batch_input="reads",
        batch_by={"type": "ITEM"},
        execution_settings=LONG,
        run=True,
    )
    parent.abort()
    parent.wait(period=WAIT)
    assert parent.status == "ABORTED"
    assert {c.status for c in parent.get_batch_children().all()} <= {"ABORTED"}


def test_queries_bulk_and_permissions(
    server: EmbeddedServer, api: sbg.Api, project: Any, app: Any, reads: list[str]
) -> None:
    a = api.tasks.create(name="q1", project=project, app=app, inputs={"reads": files(api, reads[:1])})
    drafts = list(api.tasks.query(project=project, status="DRAFT").all())
    assert a.id in {t.id for t in drafts} and all(t.status == "DRAFT" for t in drafts)
    completed = list(api.tasks.query(project=project, status="COMPLETED", order_by="created_time").all())
    assert completed and all(t.status == "COMPLETED" for t in completed)
    times = [t.created_time for t in completed]
    assert times == sorted(times)
    bulk = api.tasks.bulk_get([a.id, "00000000-0000-4000-8000-000000000000"])
    assert bulk[0].resource.id == a.id and bulk[0].valid
    assert not bulk[1].valid and bulk[1].error.code == 7002
    stranger = user_api(server, "stranger")
    with pytest.raises(NotFound):
        stranger.tasks.get(a.id)
    with pytest.raises(NotFound):
        stranger.post(f"/tasks/{a.id}/actions/clone")
    assert list(stranger.tasks.query().all()) == []
