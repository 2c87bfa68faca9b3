"""Offset/limit paging and the collection envelope ``{href, items, links}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query

from bridgehead.domain.errors import BadRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


def _as_int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Invalid value for '{name}': {value!r} is not an integer.", field=name)


def page_params(
    offset: Annotated[str | None, Query(description="0-based index of the first item")] = None,
    limit: Annotated[str | None, Query(description="items per page, 1 to 100 (default 50)")] = None,
) -> Page:
    off = _as_int(offset, "offset")
    lim = _as_int(limit, "limit")
    if off is not None and not 0 <= off <= MAX_OFFSET:
        # The upper bound keeps the value inside a 32-bit SQL integer: no database error (500) later.
        raise BadRequest(
            f"Invalid value for 'offset': it must be between 0 and {MAX_OFFSET}.", field="offset"
        )
    if lim is not None and not 1 <= lim <= MAX_OFFSET:
        raise BadRequest("Invalid value for 'limit': it must be between 1 and 100.", field="limit")
    return Page(offset=off or 0, limit=min(lim or DEFAULT_LIMIT, MAX_LIMIT))
