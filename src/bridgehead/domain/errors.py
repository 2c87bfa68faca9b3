"""Typed domain errors. Each carries the HTTP status, the platform code and, where it helps, a field.

``api/errors.py`` is the single place that turns them into the Seven Bridges error body.
"""

from __future__ import annotations

MORE_INFO = "https://docs.sevenbridges.com/docs/api-status-codes"


class SbgError(Exception):
    status = 400
    code = 90000
    headers: dict[str, str] | None = None

    def __init__(
        self, message: str, *, code: int | None = None, status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadRequest(SbgError):
    status = 400
    code = 90000


class Unauthorized(SbgError):
    status = 401
    code = 90001


class Forbidden(SbgError):
    status = 403
    code = 90002


class NotFound(SbgError):
    status = 404
    code = 90003


class Conflict(SbgError):
    status = 409
    code = 90007


class TooManyRequests(SbgError):
    status = 429
    code = 1000


class PayloadTooLarge(SbgError):
    status = 413
    code = 90000
