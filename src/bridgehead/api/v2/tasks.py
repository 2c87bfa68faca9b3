"""Tasks: create/list/get/patch/delete, inputs, run/abort/clone actions, execution details, bulk get."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response
from sqlalchemy.exc import IntegrityError

from bridgehead.api.deps import CtxDep
from bridgehead.api.fields import FieldSelector
from bridgehead.api.pagination import Page, page_params
from bridgehead.db.models import Project
from bridgehead.db.models.tasks import DRAFT
from bridgehead.domain.errors import BadRequest, SbgError
from bridgehead.domain.tasks import inserts, locations, queries, service
from bridgehead.schemas.tasks import BulkTaskIds, TaskCreate, TaskOut, job_out, task_out

router = APIRouter(tags=["tasks"])

PageDep = Annotated[Page, Depends(page_params)]
TRUE = {"true", "1", "yes"}
FALSE = {"false", "0", "no"}
BULK_MAX = 100


def qbool(value: str | None, name: str) -> bool | None:
    """Query booleans in any spelling the clients use (``True``, ``true``, ``TRUE``, ``1``)."""
    if value is None or value == "":
        return None
    low = value.lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise BadRequest(f"Invalid value for '{name}': {value!r} is not a boolean.", field=name)


def _defaults(ctx: CtxDep) -> service.Defaults:
    return service.Defaults(ctx.settings.default_cores, ctx.settings.default_memory_mib)


def _out(ctx: CtxDep, s: Any, task: Any) -> dict[str, Any]:
    project = s.get(Project, task.project_id)  # already in the session from the permission check
    return task_out(ctx.api, task, project.sbg_id)


def _wake_dispatcher(ctx: CtxDep, task: dict[str, Any]) -> None:
    """After the commit: let an in-process dispatcher take new work without waiting its interval.

    Drafts give it nothing to do, so they do not wake it (a pass per draft would cost four queries).
    """
    if task.get("status") != "DRAFT":
        ctx.state.wake("dispatcher")


def _run_flag(action: str | None, run: str | None) -> bool:
    if action is not None and action != "":
        if action.lower() != "run":
            raise BadRequest(
                f"Invalid task action {action!r}; the only action here is 'run'.", code=7013, field="action"
            )
        return True
    return bool(qbool(run, "run"))


@router.post("/tasks", status_code=201, response_model=TaskOut, summary="Create a task (draft, or run it)")
def create_task(
    ctx: CtxDep,
    body: TaskCreate | None = None,
    action: str | None = None,
    run: str | None = None,
    batch: str | None = None,
) -> Response:
    if body is None:
        raise BadRequest("Missing request body: a task needs 'project' and 'app'.", code=7015, field="app")
    given = set(body.model_fields_set)
    location = body.output_location
    top = {k: getattr(body, k) for k in locations.TOP_LEVEL if k in given}
    if top:
        location = {**top, **(location or {})}
    draft = service.Draft(
        project=body.project or "",
        app=body.app or "",
        name=body.name,
        description=body.description,
        inputs=body.inputs or {},
        batch=body.batch,
        batch_input=body.batch_input,
        batch_by=body.batch_by,
        use_interruptible_instances=body.use_interruptible_instances,
        execution_settings=body.execution_settings,
        output_location=location,
        given=given,
    )
    run_it, no_batch = _run_flag(action, run), qbool(batch, "batch") is False
    # Checks and validation read; only the INSERT needs the write transaction, so that creations (and
    # the dispatcher) hold SQLite's single write lock for a moment each rather than for a whole request.
    with ctx.db.read() as s:
        task = service.create(
            s, ctx.user, draft, _defaults(ctx), run=run_it, disable_batch=no_batch, save=False
        )
        project = s.get(Project, task.project_id)  # held by the session since the permission check
        assert project is not None
    # The row is built and its JSON serialised before the write transaction: it holds the lock for
    # the INSERT alone (through the ORM, the flush of one task was most of that time).
    row = inserts.encode_tasks([inserts.task_row(task)])
    try:
        with ctx.db.write() as s:
            inserts.insert_tasks(s, row)
    except IntegrityError:
        # Something the task refers to went away in between (a deleted project, app or file): the
        # whole creation again in one write transaction answers with the right error.
        with ctx.db.write() as s:
            task = service.create(s, ctx.user, draft, _defaults(ctx), run=run_it, disable_batch=no_batch)
            project = s.get(Project, task.project_id)
            assert project is not None
    data = task_out(ctx.api, task, project.sbg_id)  # after the commit: the write lock is free sooner
    _wake_dispatcher(ctx, data)
    return ctx.one(data, 201)


@router.get("/tasks", summary="Tasks the caller can see, filtered and ordered")
def list_tasks(
    ctx: CtxDep,
    page: PageDep,
    project: str | None = None,
    status: Annotated[list[str] | None, Query()] = None,
    parent: str | None = None,
    batch: str | None = None,
    origin_id: str | None = None,
    created_from: str | None = None,
    created_to: str | None = None,
    started_from: str | None = None,
    started_to: str | None = None,
    ended_from: str | None = None,
    ended_to: str | None = None,
    order_by: str | None = None,
    order: str | None = None,
) -> Response:
    filters = {
        "project": project,
        "status": status,
        "parent": parent,
        "batch": qbool(batch, "batch"),
        "origin_id": origin_id,
        "created_from": created_from,
        "created_to": created_to,
        "started_from": started_from,
        "started_to": started_to,
        "ended_from": ended_from,
        "ended_to": ended_to,
    }
    with ctx.db.read() as s:
        rows, total = queries.list_tasks(
            s, ctx.user, filters=filters, order_by=order_by, order=order, offset=page.offset, limit=page.limit
        )
        names = queries.project_ids(s, rows)
        items = [task_out(ctx.api, t, names[t.project_id]) for t in rows]
    return ctx.page(items, total, page)


@router.post("/bulk/tasks/get", summary="Several tasks by id (bulk envelope)")
def bulk_get(ctx: CtxDep, body: BulkTaskIds | None = None) -> Response:
    if body is None:
        raise BadRequest("Missing required field 'task_ids'.", field="task_ids")
    if len(body.task_ids) > BULK_MAX:
        raise BadRequest(f"Too many entries in 'task_ids': at most {BULK_MAX} per call.", field="task_ids")
    selector = FieldSelector.parse(ctx.request.query_params.get("fields"), prefix="resource.")
    items: list[dict[str, Any]] = []
    with ctx.db.read() as s:
        found = queries.bulk(s, ctx.user, body.task_ids)
        names = queries.project_ids(s, [t for t in found if not isinstance(t, SbgError)])
        for item in found:
            if isinstance(item, SbgError):
                items.append(
                    {
                        "error": {
                            "status": item.status,
                            "code": item.code,
                            "message": item.message,
                            "more_info": "https://docs.sevenbridges.com/docs/api-status-codes",
                        }
                    }
                )
            else:
                items.append({"resource": selector.apply(task_out(ctx.api, item, names[item.project_id]))})
    return ctx.raw({"items": items})


@router.get("/tasks/{task_id}", response_model=TaskOut, summary="One task")
def get_task(task_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        task = queries.get_task(s, ctx.user, task_id)
        return ctx.one(_out(ctx, s, task))


@router.patch("/tasks/{task_id}", response_model=TaskOut, summary="Edit a task (inputs merge per key)")
def update_task(task_id: str, ctx: CtxDep, body: Annotated[Any, Body()] = None) -> Response:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", field="body")
    known = {
        "name",
        "description",
        "inputs",
        "batch",
        "batch_input",
        "batch_by",
        "use_interruptible_instances",
        "execution_settings",
        "output_location",
    }
    changes = {k: v for k, v in body.items() if k in known}
    top = {k: body[k] for k in locations.TOP_LEVEL if k in body}
    if top:
        changes["output_location"] = {**top, **(changes.get("output_location") or {})}
    with ctx.db.write() as s:
        task = queries.get_task(s, ctx.user, task_id)
        service.modify(s, ctx.user, task, changes)
        data = _out(ctx, s, task)
    return ctx.one(data)


@router.delete("/tasks/{task_id}", status_code=204, summary="Delete a draft or finished task")
def delete_task(task_id: str, ctx: CtxDep) -> Response:
    with ctx.db.write() as s:
        task = queries.get_task(s, ctx.user, task_id)
        service.delete(s, ctx.user, task)
    return ctx.no_content()


@router.get("/tasks/{task_id}/inputs", summary="The task's inputs (unset inputs as null)")
def get_inputs(task_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        task = queries.get_task(s, ctx.user, task_id)
        return ctx.one(dict(task.inputs or {}))


@router.patch("/tasks/{task_id}/inputs", summary="Change some inputs of a draft task")
def update_inputs(task_id: str, ctx: CtxDep, body: Annotated[Any, Body()] = None) -> Response:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object of input values.", field="inputs")
    with ctx.db.write() as s:
        task = queries.get_task(s, ctx.user, task_id)
        if task.status != DRAFT:
            raise BadRequest(
                f"This action is only available for DRAFT tasks (task is {task.status}).",
                code=7007,
                field="inputs",
            )
        service.modify(s, ctx.user, task, {"inputs": body})
        data = dict(task.inputs or {})
    return ctx.one(data)


@router.post(
    "/tasks/{task_id}/actions/{action}",
    response_model=TaskOut,
    summary="run, abort or clone a task",
    description=(
        "`run` (DRAFT only; query `batch=false` disables batching, `use_interruptible_instances`); "
        "`abort` (QUEUED/RUNNING; a batch parent aborts its children); `clone` copies app revision, inputs, "
        "settings, batching and output locations into a new DRAFT with `origin_id` set (query `action=run` "
        "runs it). Rerun of a batch: `clone?failed_only=true` keeps only the batch items of children that "
        "FAILED or were ABORTED."
    ),
)
def task_action(
    task_id: str,
    action: str,
    ctx: CtxDep,
    batch: str | None = None,
    use_interruptible_instances: str | None = None,
    failed_only: str | None = None,
    run: str | None = None,
    action_param: Annotated[str | None, Query(alias="action")] = None,
) -> Response:
    with ctx.db.write() as s:
        task = queries.get_task(s, ctx.user, task_id)
        if action == "run":
            service.start(
                s,
                ctx.user,
                task,
                disable_batch=qbool(batch, "batch") is False,
                interruptible=qbool(use_interruptible_instances, "use_interruptible_instances"),
            )
            result = task
        elif action == "abort":
            service.abort(s, ctx.user, task)
            result = task
        elif action == "clone":
            result = service.clone(
                s,
                ctx.user,
                task,
                _defaults(ctx),
                run=_run_flag(action_param, run),
                failed_only=bool(qbool(failed_only, "failed_only")),
            )
        else:
            raise BadRequest(
                f"Invalid task action {action!r}; allowed: run, abort, clone.", code=7013, field="action"
            )
        data = _out(ctx, s, result)
    _wake_dispatcher(ctx, data)
    return ctx.one(data, 201 if action == "clone" else 200)


@router.get("/tasks/{task_id}/execution_details", summary="Jobs of a task with their logs")
def execution_details(task_id: str, ctx: CtxDep) -> Response:
    with ctx.db.read() as s:
        task = queries.get_task(s, ctx.user, task_id)
        es = task.execution_status or {}
        jobs = [] if task.batch else [job_out(ctx.api, j) for j in task.jobs or []]
        data = {
            "href": ctx.href(f"/tasks/{task.id}/execution_details"),
            "start_time": task_out(ctx.api, task, "")["start_time"],
            "end_time": task_out(ctx.api, task, "")["end_time"],
            "status": task.status,
            "message": es.get("message", ""),
            "jobs": jobs,
        }
    return ctx.one(data)
