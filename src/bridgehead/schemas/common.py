"""Wire helpers shared by every schema module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer


def fmt_dt(value: datetime | None) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ``: the only shape the official client parses (never ``+00:00``)."""
    if value is None:
        return None
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat pads the year to four digits; [:19] drops any offset. A third faster than strftime.
    return value.isoformat(timespec="seconds")[:19] + "Z"


ItemT = TypeVar("ItemT", bound=BaseModel)

SbgDateTime = Annotated[datetime, PlainSerializer(fmt_dt, return_type=str)]


class Wire(BaseModel):
    """Base for request bodies: unknown fields are ignored, as the platform does."""

    model_config = ConfigDict(extra="ignore")


class ErrorBody(BaseModel):
    status: int
    code: int
    message: str
    more_info: str


class Link(BaseModel):
    href: str
    rel: str
    method: str = "GET"


class Collection(BaseModel):
    href: str
    items: list[dict[str, Any]]
    links: list[Link]


class CollectionOf(BaseModel, Generic[ItemT]):
    """The paged envelope with typed items (for the OpenAPI document); ``X-Total-Matching-Query`` holds
    the total."""

    href: str
    items: list[ItemT]
    links: list[Link]
