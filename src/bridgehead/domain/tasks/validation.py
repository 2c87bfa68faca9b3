"""Task input validation against the app summary.

``check_inputs`` normalises what the client sent (bare ids, ``location``, any class spelling) into
the platform's echo form and collects the platform's validation errors
(``error/task_validation/input/...``). Validation never raises for bad input values: a draft with
errors is saved and shown; only running it is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bridgehead.db.models import File
from bridgehead.db.models.files import FILE, FOLDER
from bridgehead.domain.cwl import secondary_name
from bridgehead.domain.files import FILE_ID_RE

PREFIX = "error/task_validation/input/"
SCHEMA = PREFIX + "schema"
INVALID_NAME = PREFIX + "invalid_name_files"
FILES_MISSING = PREFIX + "files_missing"
SECONDARY_MISSING = PREFIX + "secondary_files_missing"
REQUIRED = PREFIX + "required"

MESSAGES = {
    SCHEMA: "Value for this input does not match the expected type.",
    INVALID_NAME: "Some files on this input contain impermissible characters in their name.",
    FILES_MISSING: "Some files found in this input cannot be found in the project.",
    SECONDARY_MISSING: "Some secondary (index) files required by this input cannot be found in the project.",
    REQUIRED: "Required input is not set.",
}
# Characters that trip command-line tools; the platform flags them before a run.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._+\-=,@%#]+$")
PRIMITIVES = {"string", "int", "long", "float", "double", "boolean", "Any", "null"}


@dataclass
class Checked:
    """Inputs in echo form plus the validation errors found."""

    inputs: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)


def error(kind: str, input_id: str, path: str, detail: str = "") -> dict[str, Any]:
    message = MESSAGES[kind] + (f" {detail}" if detail else "")
    return {"type": kind, "message": message, "input_id": input_id, "path": path}


def is_optional(t: Any) -> bool:
    return t == "null" or t == "Any" or (isinstance(t, list) and any(is_optional(x) for x in t))


def file_ref(value: Any) -> tuple[str | None, str | None]:
    """(kind, id) for a File/Directory value: a bare id, or a dict with ``path``/``location``."""
    if isinstance(value, str):
        return ("file", value) if FILE_ID_RE.match(value) else (None, None)
    if isinstance(value, dict) and isinstance(value.get("class"), str):
        cls = value["class"].lower()
        ref = value.get("path") or value.get("location")
        if not isinstance(ref, str):
            return None, None
        ref = ref.rsplit("/", 1)[-1] if "/" in ref else ref
        if cls == "file":
            return "file", ref
        if cls in ("directory", "folder"):
            return "folder", ref
    return None, None


class _Checker:
    def __init__(self, session: Session, project_id: int, files: dict[str, File]) -> None:
        self.session = session
        self.project_id = project_id
        self.files = files
        self.errors: list[dict[str, Any]] = []

    def check(self, value: Any, t: Any, input_id: str, path: str, spec: dict[str, Any]) -> tuple[Any, bool]:
        """(normalised value, ok). Errors of file lookups are recorded even when the shape is fine."""
        if isinstance(t, list):  # union: the first member type that fits without schema errors wins
            if value is None and is_optional(t):
                return None, True
            saved = list(self.errors)
            for member in t:
                if member == "null":
                    continue
                self.errors = list(saved)
                out, ok = self.check(value, member, input_id, path, spec)
                if ok:
                    return out, True
            self.errors = saved
            return value, False
        if isinstance(t, dict):
            kind = t.get("type")
            if kind == "array":
                if not isinstance(value, list):
                    return value, False
                out_items, all_ok = [], True
                for i, item in enumerate(value):
                    out, ok = self.check(item, t.get("items"), input_id, f"{path}[{i}]", spec)
                    out_items.append(out)
                    all_ok = all_ok and ok
                return out_items, all_ok
            if kind == "enum":
                symbols = [str(s).rsplit("/", 1)[-1] for s in t.get("symbols", [])]
                return value, isinstance(value, str) and value in symbols
            if kind == "record":
                if not isinstance(value, dict) or "class" in value:
                    return value, False
                out_rec, all_ok = dict(value), True
                for fld in t.get("fields", []):
                    name = str(fld.get("name", "")).rsplit("/", 1)[-1]
                    sub = value.get(name)
                    if sub is None and not is_optional(fld.get("type")):
                        return value, False
                    if sub is not None:
                        out, ok = self.check(sub, fld.get("type"), input_id, f"{path}.{name}", spec)
                        out_rec[name] = out
                        all_ok = all_ok and ok
                return out_rec, all_ok
            return value, True  # an unknown complex type: accepted as is
        if t in ("File", "Directory"):
            return self.file(value, t, input_id, path, spec)
        if value is None:
            return None, t in ("null", "Any")
        if t == "Any":
            return value, True
        if t == "string":
            return value, isinstance(value, str)
        if t in ("int", "long"):
            return value, isinstance(value, int) and not isinstance(value, bool)
        if t in ("float", "double"):
            return value, isinstance(value, (int, float)) and not isinstance(value, bool)
        if t == "boolean":
            return value, isinstance(value, bool)
        return value, t not in PRIMITIVES

    def file(self, value: Any, t: str, input_id: str, path: str, spec: dict[str, Any]) -> tuple[Any, bool]:
        kind, ref = file_ref(value)
        want = "file" if t == "File" else "folder"
        if kind != want or ref is None:
            return value, False
        found = self.files.get(ref)
        if (
            found is None
            or found.project_id != self.project_id
            or found.type != (FILE if kind == "file" else FOLDER)
        ):
            self.errors.append(error(FILES_MISSING, input_id, path, f"Missing: {ref}."))
            return {"class": t, "path": ref}, True
        out: dict[str, Any] = {"class": t, "path": found.id, "name": found.name}
        if kind == "file":
            out["size"] = found.size
            out["metadata"] = dict(found.metadata_ or {})
            # The CWL format the caller gave (an IRI): tools that declare ``format`` check it.
            if isinstance(value, dict) and isinstance(value.get("format"), str):
                out["format"] = value["format"]
        if not SAFE_NAME.match(found.name):
            self.errors.append(error(INVALID_NAME, input_id, path, f"File: {found.name!r}."))
        if kind == "file" and spec.get("secondaryFiles"):
            out["secondaryFiles"] = self.secondary(found, spec["secondaryFiles"], input_id, path)
        return out, True

    def secondary(self, main: File, patterns: list[Any], input_id: str, path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for entry in patterns:
            pattern = entry.get("pattern") if isinstance(entry, dict) else entry
            required = entry.get("required", True) if isinstance(entry, dict) else True
            if not isinstance(pattern, str) or "$(" in pattern or "${" in pattern:
                continue  # expressions are only known once the tool runs
            if pattern.endswith("?"):
                pattern, required = pattern[:-1], False
            name = secondary_name(main.name, pattern)
            sibling = self.session.scalar(
                select(File).where(File.parent_id == main.parent_id, File.name == name, File.type == FILE)
            )
            if sibling is not None:
                found.append({"class": "File", "path": sibling.id, "name": sibling.name})
            elif required:
                self.errors.append(error(SECONDARY_MISSING, input_id, path, f"Missing: {name}."))
        return found


def collect_ids(value: Any, out: set[str]) -> None:
    if isinstance(value, list):
        for item in value:
            collect_ids(item, out)
        return
    _, ref = file_ref(value)
    if ref is not None:
        out.add(ref)
        return
    if isinstance(value, dict) and "class" not in value:
        for item in value.values():
            collect_ids(item, out)


# Built once: constructing and hashing the statement on every task creation cost more than running it.
FILES_BY_ID = select(File).where(File.id.in_(bindparam("ids", expanding=True)))


def load_files(session: Session, ids: set[str]) -> dict[str, File]:
    wanted = [i for i in ids if FILE_ID_RE.match(i)]
    out: dict[str, File] = {}
    for start in range(0, len(wanted), 500):
        for f in session.scalars(FILES_BY_ID, {"ids": wanted[start : start + 500]}):
            out[f.id] = f
    return out


def check_inputs(
    session: Session,
    summary: dict[str, Any],
    project_id: int,
    inputs: dict[str, Any],
    batch_input: str | None = None,
) -> Checked:
    """Validate every app input; unset inputs are echoed as null.

    The batch input of a batch task may carry a list where the port takes one item: each child
    gets one item (or group), so the list is checked item by item.
    """
    ids: set[str] = set()
    collect_ids(inputs, ids)
    checker = _Checker(session, project_id, load_files(session, ids))
    out: dict[str, Any] = {}
    warnings: list[dict[str, Any]] = []
    declared = {str(i.get("id")): i for i in summary.get("inputs", [])}
    for input_id, spec in declared.items():
        value = inputs.get(input_id)
        t = spec.get("type")
        if value is None:
            out[input_id] = None
            if spec.get("required") and (spec.get("default") is None or input_id == batch_input):
                checker.errors.append(error(REQUIRED, input_id, input_id))
            continue
        if input_id == batch_input and isinstance(value, list):
            item_t = t.get("items") if isinstance(t, dict) and t.get("type") == "array" else t
            t = {"type": "array", "items": item_t}
        normalised, ok = checker.check(value, t, input_id, input_id, spec)
        out[input_id] = normalised
        if not ok:
            checker.errors.append(error(SCHEMA, input_id, input_id))
    for input_id, value in inputs.items():
        if input_id not in declared:
            out[input_id] = value
            warnings.append(
                {
                    "type": "warning/task_validation/input/unknown",
                    "message": f"The app has no input named {input_id!r}; the value is ignored.",
                    "input_id": input_id,
                    "path": input_id,
                }
            )
    return Checked(out, checker.errors, warnings)
