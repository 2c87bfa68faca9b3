"""Wire shapes for tasks: the create body and the task object as the platform returns it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bridgehead.db.models.tasks import Task
from bridgehead.domain.tasks import pricing, rules
from bridgehead.schemas.common import Wire, fmt_dt


class TaskCreate(Wire):
    name: str | None = None
    description: str | None = None
    project: str | None = None
    app: str | None = None
    inputs: dict[str, Any] | None = None
    batch: bool | None = None
    batch_input: Any = None
    batch_by: Any = None
    use_interruptible_instances: bool | None = None
    execution_settings: dict[str, Any] | None = None
    output_location: dict[str, Any] | None = None
    # The four output-location keys some platform pages show at the task's top level.
    main_location: Any = None
    main_location_alias: Any = None
    nodes_override: Any = None
    nodes_location: Any = None


class BulkTaskIds(Wire):
    task_ids: list[str]


class TaskOut(BaseModel):
    """Documentation of the task object (the handlers build plain dicts with these keys)."""

    href: str
    id: str
    name: str
    description: str | None
    status: str
    project: str
    app: str
    type: str
    created_by: str
    executed_by: str | None
    created_time: str
    start_time: str | None
    end_time: str | None
    batch: bool
    batch_input: str | None
    batch_by: dict[str, Any] | None
    use_interruptible_instances: bool
    execution_settings: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    output_location: dict[str, Any]
    errors: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    execution_status: dict[str, Any]
    price: dict[str, Any]
    origin_id: str | None
    origin: str | None


def _parent_status(task: Task) -> dict[str, Any]:
    stored = dict(task.execution_status or {})
    out: dict[str, Any] = {
        "message": stored.get("message")
        or ("Batch tasks list initialization." if task.status != "DRAFT" else ""),
        "queued": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "aborted": 0,
        "queued_duration": 0,
        "running_duration": 0,
        "execution_duration": 0,
        "duration": 0,
        "system_limit": False,
        "account_limit": False,
        "instance_init": False,
    }
    out.update({k: v for k, v in stored.items() if k in out})
    return out


def task_out(api: str, task: Task, project: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "href": f"{api}/tasks/{task.id}",
        "id": task.id,
        "name": task.name,
        "description": task.description,
        "status": task.status,
        "project": project,
        "app": task.app_id,
        "type": "v2",
        "created_by": task.created_by,
        "executed_by": task.executed_by,
        "created_time": fmt_dt(task.created_time),
        "start_time": fmt_dt(task.start_time),
        "end_time": fmt_dt(task.end_time),
        "batch": bool(task.batch),
        "batch_input": task.batch_input,
        "batch_by": task.batch_by,
        "use_interruptible_instances": bool(task.use_interruptible_instances),
        "execution_settings": dict(task.execution_settings or {}),
        "inputs": dict(task.inputs or {}),
        "outputs": dict(task.outputs or {}),
        "output_location": dict(task.output_location or {}),
        "errors": list(task.errors or []),
        "warnings": list(task.warnings or []),
        "execution_status": _parent_status(task) if task.batch else rules.base_status(task),
        "price": task.price or pricing.zero(),
        "origin_id": task.origin_id,
        "origin": task.origin_id,
    }
    if task.parent_id:
        data["parent"] = task.parent_id
        data["batch_group"] = task.batch_group or {"value": "", "fields": {}}
    return data


def job_out(api: str, job: dict[str, Any]) -> dict[str, Any]:
    """One job of ``execution_details``; log values point at the log files' download_info."""
    return {
        "name": job.get("name"),
        "start_time": job.get("start_time"),
        "end_time": job.get("end_time"),
        "status": job.get("status"),
        "command_line": job.get("command_line", ""),
        "retried": False,
        "instance": {
            "id": "local",
            "type": "local",
            "provider": "bridgehead",
            "disk": {"size": 0, "unit": "GB", "type": "local"},
        },
        "docker": {"checksum": ""},
        "logs": {name: f"{api}/files/{fid}/download_info" for name, fid in (job.get("logs") or {}).items()},
    }
