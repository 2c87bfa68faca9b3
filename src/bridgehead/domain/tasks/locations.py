"""Output locations: where a task's outputs land in the project and which volume they are exported to.

``main_location`` / ``nodes_location.<id>.output_location`` name either a project path (``/a/b``) or
a volume (``volume://owner/vol/prefix``; ``volumes://`` too). Tokens ``<task_id>``, ``<task_name>``,
``<app_name>`` and ``<project_id>`` are substituted when the task runs. Outputs are always project
files; a volume location additionally exports them there when the task completes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bridgehead.db.models import File, Project
from bridgehead.db.models.tasks import Task
from bridgehead.domain import files
from bridgehead.domain.errors import BadRequest

SCHEMES = ("volume://", "volumes://")
TOP_LEVEL = ("main_location", "main_location_alias", "nodes_override", "nodes_location")


@dataclass(frozen=True)
class Target:
    folder: File
    volume: str | None = None  # owner/name
    prefix: str = ""


def _check_location(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(
            f"Invalid '{field}': it must be a project path or a volume:// location.", field=field
        )
    if value.startswith(SCHEMES):
        rest = value.split("://", 1)[1].strip("/")
        if len(rest.split("/")) < 2:
            raise BadRequest(
                f"Invalid '{field}' {value!r}: expected volume://owner/volume[/prefix].", field=field
            )
    return value


def check(value: Any, summary: dict[str, Any]) -> dict[str, Any] | None:
    """Validate an ``output_location`` object; unknown output ids are refused by name."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("Invalid 'output_location': it must be an object.", field="output_location")
    out: dict[str, Any] = {}
    for key in ("main_location", "main_location_alias"):
        if value.get(key) is not None:
            out[key] = _check_location(value[key], f"output_location.{key}")
    if value.get("nodes_override") is not None:
        if not isinstance(value["nodes_override"], bool):
            raise BadRequest(
                "Invalid 'output_location.nodes_override': it must be a boolean.",
                field="output_location.nodes_override",
            )
        out["nodes_override"] = value["nodes_override"]
    nodes = value.get("nodes_location")
    if nodes is not None:
        if not isinstance(nodes, dict):
            raise BadRequest(
                "Invalid 'output_location.nodes_location': it must be an object.",
                field="output_location.nodes_location",
            )
        output_ids = {str(o.get("id")) for o in summary.get("outputs", [])}
        out["nodes_location"] = {}
        for oid, spec in nodes.items():
            fld = f"output_location.nodes_location.{oid}"
            if output_ids and oid not in output_ids:
                raise BadRequest(f"Invalid '{fld}': the app has no output {oid!r}.", field=fld)
            if not isinstance(spec, dict):
                raise BadRequest(f"Invalid '{fld}': it must be an object.", field=fld)
            node: dict[str, Any] = {}
            for key in ("output_location", "output_location_alias"):
                if spec.get(key) is not None:
                    node[key] = _check_location(spec[key], f"{fld}.{key}")
            out["nodes_location"][oid] = node
    return out


def substitute(template: str, task: Task, project: Project) -> str:
    app_name = task.app_id.split("/")[2] if task.app_id.count("/") >= 2 else task.app_id
    return (
        template.replace("<task_id>", task.id)
        .replace("<task_name>", safe(task.name))
        .replace("<app_name>", app_name)
        .replace("<project_id>", project.sbg_id.replace("/", "_"))
    )


def safe(name: str) -> str:
    cleaned = "".join("_" if c in "/\\\x00" else c for c in name).strip() or "task"
    return cleaned[:200]


def project_folder(session: Session, project: Project, path: str) -> File:
    """Create (or reuse) the folders of ``/a/b/c`` under the project root."""
    folder = files.root_folder(session, project)
    for part in [p for p in path.split("/") if p and p != "."]:
        folder = files.make_folder(session, project=project, parent=folder, name=safe(part), exist_ok=True)
    return folder


def default_folder(session: Session, task: Task, project: Project) -> File:
    return project_folder(session, project, f"{safe(task.name)}_{task.id[:8]}")


def _resolve(
    session: Session, task: Task, project: Project, location: str | None, alias: str | None, fallback: File
) -> Target:
    if location is None:
        return Target(fallback)
    location = substitute(location, task, project)
    if location.startswith(SCHEMES):
        rest = location.split("://", 1)[1].strip("/").split("/")
        folder = project_folder(session, project, substitute(alias, task, project)) if alias else fallback
        return Target(folder, "/".join(rest[:2]), "/".join(rest[2:]))
    return Target(project_folder(session, project, location))


def targets(
    session: Session, task: Task, project: Project, output_ids: list[str]
) -> tuple[File, dict[str, Target]]:
    """The task's main output folder and, per output port, where its files go."""
    loc = task.output_location or {}
    default = default_folder(session, task, project)
    main = _resolve(session, task, project, loc.get("main_location"), loc.get("main_location_alias"), default)
    nodes = loc.get("nodes_location") or {}
    out: dict[str, Target] = {}
    for oid in output_ids:
        node = nodes.get(oid) or {}
        if node.get("output_location"):
            out[oid] = _resolve(
                session,
                task,
                project,
                node["output_location"],
                node.get("output_location_alias"),
                main.folder,
            )
        else:
            out[oid] = main
    return main.folder, out
