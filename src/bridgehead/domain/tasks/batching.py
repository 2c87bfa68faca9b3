"""Batching: checking ``batch_input``/``batch_by`` and splitting a parent into child tasks.

ITEM makes one child per item of the batch input. CRITERIA groups the batch input's files by the
listed ``metadata.<field>`` values in order; a file lacking any listed field gets a group of its own.
"""

from __future__ import annotations

from typing import Any

from bridgehead.domain.errors import BadRequest
from bridgehead.domain.tasks.validation import file_ref

ITEM = "ITEM"
CRITERIA = "CRITERIA"


def check_batch_by(batch_by: Any) -> dict[str, Any]:
    """Normalise ``batch_by`` (type upper-cased) or raise the platform's 70xx error naming the field."""
    if not isinstance(batch_by, dict):
        raise BadRequest(
            "Invalid value for 'batch_by': it must be an object with a 'type'.", code=7020, field="batch_by"
        )
    kind = batch_by.get("type")
    if not isinstance(kind, str) or kind.upper() not in (ITEM, CRITERIA):
        raise BadRequest(
            f"Invalid 'batch_by.type' {kind!r}: allowed values are 'ITEM' and 'CRITERIA'.",
            code=7020,
            field="batch_by.type",
        )
    if kind.upper() == ITEM:
        return {"type": ITEM}
    criteria = batch_by.get("criteria")
    if not isinstance(criteria, list) or not criteria:
        raise BadRequest(
            "Missing batch criteria: 'batch_by.criteria' must list metadata fields.",
            code=7019,
            field="batch_by.criteria",
        )
    for i, item in enumerate(criteria):
        if not isinstance(item, str) or not item.startswith("metadata.") or item == "metadata.":
            raise BadRequest(
                f"Invalid 'batch_by.criteria[{i}]' {item!r}: criteria must be 'metadata.<field>'.",
                field=f"batch_by.criteria[{i}]",
            )
    return {"type": CRITERIA, "criteria": list(criteria)}


def check_batch_input(batch_input: Any, input_ids: set[str]) -> str:
    if not isinstance(batch_input, str) or not batch_input:
        raise BadRequest(
            "Invalid 'batch_input': it must name one of the app's inputs.", code=7018, field="batch_input"
        )
    if batch_input not in input_ids:
        raise BadRequest(
            f"Invalid 'batch_input' {batch_input!r}: the app has no input with that id.",
            code=7018,
            field="batch_input",
        )
    return batch_input


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or value.get("path") or "")
    return str(value)


def groups(
    items: list[Any], batch_by: dict[str, Any], metadata: dict[str, dict[str, Any]]
) -> list[tuple[list[Any], dict[str, Any]]]:
    """Split the batch input into (items, batch_group) pairs in a stable order."""
    if batch_by.get("type") == ITEM:
        return [([item], {"value": _label(item), "fields": {}}) for item in items]
    criteria: list[str] = batch_by.get("criteria", [])
    grouped: dict[tuple[str, ...], list[Any]] = {}
    singles: list[tuple[list[Any], dict[str, Any]]] = []
    for item in items:
        _, ref = file_ref(item)
        meta = metadata.get(ref or "", {})
        values = [meta.get(c.removeprefix("metadata.")) for c in criteria]
        if any(v is None or v == "" for v in values):
            singles.append(([item], {"value": _label(item), "fields": {}}))
            continue
        grouped.setdefault(tuple(str(v) for v in values), []).append(item)
    out = [
        (members, {"value": ", ".join(key), "fields": dict(zip(criteria, key, strict=True))})
        for key, members in grouped.items()
    ]
    return out + singles
