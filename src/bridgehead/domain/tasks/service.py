"""Task use cases: create, modify, run, abort, clone/rerun, delete.

Every function takes a session and the caller, checks permissions, validates, and changes rows;
none commits. Requests only change state: the dispatcher loop does the work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridgehead.db.base import new_uuid, utcnow
from bridgehead.db.models import App, AppRevision, Project, User
from bridgehead.db.models.tasks import (
    ABORTED,
    ABORTING,
    DRAFT,
    FAILED,
    QUEUED,
    RUNNING,
    TERMINAL,
    Task,
)
from bridgehead.domain import projects
from bridgehead.domain.errors import BadRequest, Forbidden, NotFound
from bridgehead.domain.tasks import batching, locations, rules, validation
from bridgehead.domain.tasks.queries import get_task

APP_ID_RE = re.compile(r"^[^/\s]+/[^/\s]+/[^/\s]+(/\d+)?$")
SETTINGS_TYPES: dict[str, tuple[type[Any], ...]] = {
    "instance_type": (str,),
    "max_parallel_instances": (int,),
    "use_memoization": (bool,),
    "use_elastic_disk": (bool,),
}


@dataclass
class Defaults:
    """Server settings the use cases need (kept apart from ``config.Settings`` to stay testable)."""

    cores: int = 1
    memory_mib: int = 1024


@dataclass
class Draft:
    """A create request after the edge parsed it; ``given`` names the keys the client sent."""

    project: str
    app: str
    name: str | None = None
    description: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    batch: bool | None = None
    batch_input: Any = None
    batch_by: Any = None
    use_interruptible_instances: bool | None = None
    execution_settings: dict[str, Any] | None = None
    output_location: dict[str, Any] | None = None
    given: set[str] = field(default_factory=set)


def resolve_app(
    session: Session, user: User, app_id: str, field_name: str = "app", known: Project | None = None
) -> AppRevision:
    """The app revision a task runs: ``owner/project/app`` (latest) or ``.../rev``."""
    try:
        from bridgehead.domain import apps as app_domain  # the apps area's resolver, when present

        resolver = getattr(app_domain, "resolve", None)
    except ImportError:
        resolver = None
    if resolver is not None:
        found: AppRevision = resolver(session, user, app_id, field=field_name, known=known, with_raw=False)
        return found
    if not isinstance(app_id, str) or not APP_ID_RE.match(app_id):
        raise BadRequest(
            f"Malformed app id {app_id!r}; expected 'owner/project/app_name[/revision]'.",
            code=6011,
            field=field_name,
        )
    parts = app_id.split("/")
    app = session.scalar(select(App).where(App.sbg_id == "/".join(parts[:3])))
    if app is None:
        raise NotFound(f"App {app_id} does not exist.", code=6002, field=field_name)
    project = session.get(Project, app.project_id)
    assert project is not None
    try:
        projects.access_to(session, user, project, "read")
    except Forbidden:
        raise NotFound(f"App {app_id} does not exist.", code=6002, field=field_name) from None
    revision = int(parts[3]) if len(parts) == 4 else app.latest_revision
    rev = session.scalar(
        select(AppRevision).where(AppRevision.app_id == app.id, AppRevision.revision == revision)
    )
    if rev is None:
        raise NotFound(f"App {app_id} has no revision {revision}.", code=6002, field=field_name)
    return rev


def app_sbg_id(session: Session, rev: AppRevision) -> str:
    app = session.get(App, rev.app_id)
    assert app is not None
    return f"{app.sbg_id}/{rev.revision}"


def check_settings(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("Invalid 'execution_settings': it must be an object.", field="execution_settings")
    for key, types in SETTINGS_TYPES.items():
        v = value.get(key)
        if v is None:
            continue
        if not isinstance(v, types) or (types == (int,) and isinstance(v, bool)):
            raise BadRequest(
                f"Invalid 'execution_settings.{key}': {v!r} has the wrong type.",
                field=f"execution_settings.{key}",
            )
        if key == "max_parallel_instances" and isinstance(v, int) and v < 1:
            raise BadRequest(
                "Invalid 'execution_settings.max_parallel_instances': it must be 1 or more.",
                field="execution_settings.max_parallel_instances",
            )
    return dict(value)


def _batching(
    summary: dict[str, Any],
    given: set[str],
    batch: bool | None,
    batch_input: Any,
    batch_by: Any,
    disable: bool,
) -> tuple[str | None, dict[str, Any] | None, bool]:
    """(batch_input, batch_by, explicitly disabled) from the request, falling back to the app's default."""
    input_ids = {str(i.get("id")) for i in summary.get("inputs", [])}
    if "batch_input" in given or "batch_by" in given:
        if batch_input is None and batch_by is None:
            return None, None, True
        if ("batch_input" in given) != ("batch_by" in given) or batch_input is None or batch_by is None:
            raise BadRequest(
                "'batch_input' and 'batch_by' must be given together.",
                code=7023,
                field="batch_by" if batch_by is None else "batch_input",
            )
        by = batching.check_batch_by(batch_by)
        checked = batching.check_batch_input(batch_input, input_ids)
        if disable or batch is False:  # validated, then switched off as asked
            return None, None, True
        return checked, by, False
    if disable or batch is False:
        return None, None, True
    default_input, default_by = summary.get("batch_input"), summary.get("batch_by")
    if default_input and isinstance(default_by, dict) and default_input in input_ids:
        try:
            return default_input, batching.check_batch_by(default_by), False
        except BadRequest:
            return None, None, False
    return None, None, False


def _revalidate(session: Session, task: Task, summary: dict[str, Any]) -> None:
    checked = validation.check_inputs(
        session, summary, task.project_id, task.inputs or {}, task.batch_input if task.batch else None
    )
    task.inputs = checked.inputs
    task.errors = checked.errors
    task.warnings = checked.warnings
    task.outputs = {str(o.get("id")): None for o in summary.get("outputs", [])}


def _summary(session: Session, task: Task) -> dict[str, Any]:
    rev = session.get(AppRevision, task.app_revision_id) if task.app_revision_id else None
    return dict(rev.summary) if rev is not None else {"inputs": [], "outputs": []}


def create(
    session: Session,
    user: User,
    draft: Draft,
    defaults: Defaults,
    *,
    run: bool = False,
    disable_batch: bool = False,
    save: bool = True,
) -> Task:
    """A new task from a request, checked and validated (and QUEUED with ``run`` when valid).

    With ``save=False`` nothing is written: the caller may have built it in a read transaction and
    inserts it with ``insert`` in a short write transaction.
    """
    if not isinstance(draft.project, str) or not draft.project:
        raise BadRequest("Missing 'project': the task needs a project.", code=3006, field="project")
    if not isinstance(draft.app, str) or not draft.app:
        raise BadRequest("Missing 'app': the task needs an app id.", code=7015, field="app")
    acc = projects.access(session, user, draft.project, "write")
    rev = resolve_app(session, user, draft.app, known=acc.project)
    summary = dict(rev.summary or {})
    batch_input, batch_by, disabled = _batching(
        summary, draft.given, draft.batch, draft.batch_input, draft.batch_by, disable_batch
    )
    resources = summary.get("resources") or {}
    app_id = app_sbg_id(session, rev)
    now = utcnow()
    name = (
        draft.name
        if isinstance(draft.name, str) and draft.name.strip()
        else (f"{app_id.split('/')[2]} run - {now.strftime('%m-%d-%y %H:%M:%S')}")
    )
    task = Task(
        id=new_uuid(),
        project_id=acc.project.id,
        name=name[:255],
        description=draft.description,
        app_id=app_id,
        app_revision_id=rev.id,
        status=DRAFT,
        created_by=user.username,
        created_time=now,
        batch=bool(batch_input),
        batch_input=batch_input,
        batch_by=batch_by,
        batch_disabled=disabled,
        use_interruptible_instances=bool(draft.use_interruptible_instances),
        execution_settings=check_settings(draft.execution_settings),
        inputs=dict(draft.inputs or {}),
        output_location=locations.check(draft.output_location, summary),
        execution_status={},
        cores=int(resources.get("cores") or defaults.cores),
        memory=int(resources.get("ram_mib") or defaults.memory_mib),
        jobs=[],
        errors=[],
        warnings=[],
        outputs={},
    )
    _revalidate(session, task, summary)
    if run and not task.errors:
        start(session, user, task, validated=True)  # before the INSERT: one statement, not two
    if save:
        insert(session, task)
    return task


def insert(session: Session, task: Task) -> None:
    session.add(task)
    session.flush()


def modify(session: Session, user: User, task: Task, changes: dict[str, Any]) -> Task:
    """PATCH semantics: ``inputs`` merge per top-level key; any other edit needs a DRAFT."""
    projects.access_to(session, user, _project(session, task), "write")
    edits = set(changes) - {"name", "description"}
    if task.status != DRAFT and edits:
        raise BadRequest(
            "Editing is available only for tasks which are in DRAFT status. Tasks which are in RUNNING "
            f"and COMPLETED states can only be renamed (task is {task.status}).",
            code=7026,
            field=sorted(edits)[0],
        )
    if "name" in changes:
        if not isinstance(changes["name"], str) or not changes["name"].strip():
            raise BadRequest("Invalid 'name': it must be a non-empty string.", field="name")
        task.name = changes["name"][:255]
    if "description" in changes:
        if changes["description"] is not None and not isinstance(changes["description"], str):
            raise BadRequest("Invalid 'description': it must be a string.", field="description")
        task.description = changes["description"]
    if not edits:
        return task
    summary = _summary(session, task)
    if "inputs" in changes and changes["inputs"] is not None:
        if not isinstance(changes["inputs"], dict):
            raise BadRequest("Invalid 'inputs': it must be an object.", field="inputs")
        task.inputs = {**(task.inputs or {}), **changes["inputs"]}
    if {"batch", "batch_input", "batch_by"} & set(changes):
        if "batch_input" in changes or "batch_by" in changes:
            # The official client sends only what changed (and only changed sub-keys of batch_by), so
            # the other half of the pair comes from the task; 7023 when the result is still half a pair.
            new_input = changes.get("batch_input", task.batch_input)
            new_by = changes.get("batch_by", task.batch_by)
            if isinstance(new_by, dict) and "type" not in new_by and isinstance(task.batch_by, dict):
                new_by = {**task.batch_by, **new_by}
            bi, bb, disabled = _batching(
                summary, {"batch_input", "batch_by"}, changes.get("batch"), new_input, new_by, False
            )
        elif changes.get("batch") is False:
            bi, bb, disabled = None, None, True
        else:
            bi, bb, disabled = _batching(summary, set(), None, None, None, False)
        task.batch_input, task.batch_by, task.batch_disabled, task.batch = bi, bb, disabled, bool(bi)
    if "use_interruptible_instances" in changes:
        task.use_interruptible_instances = bool(changes["use_interruptible_instances"])
    if "execution_settings" in changes:
        task.execution_settings = {
            **(task.execution_settings or {}),
            **check_settings(changes["execution_settings"]),
        }
    if "output_location" in changes:
        task.output_location = locations.check(changes["output_location"], summary)
    _revalidate(session, task, summary)
    return task


def _project(session: Session, task: Task) -> Project:
    project = session.get(Project, task.project_id)
    assert project is not None
    return project


def start(
    session: Session,
    user: User,
    task: Task,
    *,
    disable_batch: bool = False,
    interruptible: bool | None = None,
    validated: bool = False,
) -> Task:
    """DRAFT -> QUEUED after a fresh validation; a task with errors stays DRAFT (400, 7024).

    ``validated`` skips the second validation when the caller validated in this same transaction.
    """
    if task.status != DRAFT:
        raise BadRequest(
            f"This action is only available for DRAFT tasks (task is {task.status}).",
            code=7007,
            field="status",
        )
    projects.access_to(session, user, _project(session, task), "execute")
    if disable_batch and task.batch:
        task.batch, task.batch_input, task.batch_by, task.batch_disabled = False, None, None, True
    if interruptible is not None:
        task.use_interruptible_instances = interruptible
    if not validated or disable_batch:
        _revalidate(session, task, _summary(session, task))
    if task.errors:
        listed = "; ".join(f"{e['input_id']}: {e['type'].rsplit('/', 1)[-1]}" for e in task.errors[:10])
        raise BadRequest(
            f"Task cannot be started due to validation errors ({listed}).", code=7024, field="inputs"
        )
    task.executed_by = user.username
    rules.transition(task, QUEUED)
    return task


def abort(session: Session, user: User, task: Task) -> Task:
    """QUEUED/RUNNING -> ABORTING; the dispatcher cancels any engine run and records ABORTED.

    Going through ABORTING even for a queued task avoids racing a dispatcher that is claiming it
    at this moment. A batch parent aborts its children: unclaimed queued ones end at once (one
    conditional UPDATE), the others go through ABORTING like single tasks.
    """
    projects.access_to(session, user, _project(session, task), "execute")
    if task.status not in (QUEUED, RUNNING):
        raise BadRequest(
            "Invalid task action. Action can be performed on tasks in the states: CREATING, RUNNING or "
            f"QUEUED (task is {task.status}).",
            code=7011,
            field="status",
        )
    now = utcnow()
    rules.transition(task, ABORTING, now=now)
    if task.batch:
        rules.abort_children(session, task.id, now)
        rules.rollup(session, task, now)
    return task


def clone(
    session: Session,
    user: User,
    source: Task,
    defaults: Defaults,
    *,
    run: bool = False,
    failed_only: bool = False,
) -> Task:
    """A new DRAFT (or running) task with the source's app revision, inputs and settings.

    ``failed_only`` (batch parents only) keeps just the batch items of children that FAILED or were
    ABORTED, which reruns the part of a batch that did not succeed.
    """
    project = _project(session, source)
    projects.access_to(session, user, project, "write")
    inputs = dict(source.inputs or {})
    if failed_only:
        if not source.batch or not source.batch_input:
            raise BadRequest("'failed_only' applies to batch tasks only.", field="failed_only")
        failed = session.scalars(
            select(Task.inputs)
            .where(Task.parent_id == source.id, Task.status.in_([FAILED, ABORTED]))
            .order_by(Task.batch_index)
        )
        items: list[Any] = []
        for child_inputs in failed:
            value = (child_inputs or {}).get(source.batch_input)
            items.extend(value if isinstance(value, list) else [value])
        if not items:
            raise BadRequest("The batch has no failed or aborted children to rerun.", field="failed_only")
        inputs[source.batch_input] = items
    task = Task(
        id=new_uuid(),
        project_id=source.project_id,
        name=source.name,
        description=source.description,
        app_id=source.app_id,
        app_revision_id=source.app_revision_id,
        status=DRAFT,
        created_by=user.username,
        created_time=utcnow(),
        batch=source.batch,
        batch_input=source.batch_input,
        batch_by=source.batch_by,
        batch_disabled=source.batch_disabled,
        use_interruptible_instances=source.use_interruptible_instances,
        execution_settings=dict(source.execution_settings or {}),
        inputs=inputs,
        output_location=source.output_location,
        execution_status={},
        origin_id=source.id,
        cores=source.cores,
        memory=source.memory,
        jobs=[],
        errors=[],
        warnings=[],
        outputs={},
    )
    _revalidate(session, task, _summary(session, task))
    session.add(task)
    session.flush()
    if run and not task.errors:
        start(session, user, task, validated=True)
    return task


def delete(session: Session, user: User, task: Task) -> None:
    projects.access_to(session, user, _project(session, task), "write")
    if task.status not in (DRAFT, *TERMINAL):
        raise BadRequest(
            f"Only DRAFT or finished tasks can be deleted; abort the task first (task is {task.status}).",
            code=7007,
            field="status",
        )
    if task.batch:
        session.execute(sql_delete(Task).where(Task.parent_id == task.id))
    session.delete(task)


def load(session: Session, user: User, task_id: str, permission: str = "read") -> Task:
    return get_task(session, user, task_id, permission)
