"""The one boundary where every error becomes ``{"status", "code", "message", "more_info"}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from bridgehead.api.deps import SbgJSONResponse as ORJSONResponse
from bridgehead.domain.errors import MORE_INFO, SbgError

log = logging.getLogger(__name__)

GENERIC_CODES = {
    400: 90000,
    401: 90001,
    403: 90002,
    404: 90003,
    405: 90006,
    409: 90007,
    413: 90000,
    415: 90008,
    429: 1000,
    500: 90004,
    503: 90005,
}


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {"status": status, "code": code, "message": message, "more_info": MORE_INFO}


def error_response(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> ORJSONResponse:
    return ORJSONResponse(error_body(status, code, message), status_code=status, headers=headers)


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 90009, "Request body could not be decoded: it is not valid JSON."
    messages = []
    for err in errors[:5]:
        field = _loc_to_field(err.get("loc", ()))
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "missing":
            messages.append(f"Missing required field '{field}'." if field else "Missing request body.")
        elif field:
            messages.append(f"Invalid value for '{field}': {msg}.")
        else:
            messages.append(f"Invalid request body: {msg}.")
    return 90000, " ".join(messages)


def install(app: FastAPI) -> None:
    @app.exception_handler(SbgError)
    async def _sbg(_: Request, exc: SbgError) -> ORJSONResponse:
        headers = getattr(exc, "headers", None)
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        code, message = validation_message(exc)
        return error_response(400, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        status = exc.status_code
        if status == 404:
            message = f"Resource {request.url.path} does not exist."
        elif status == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
        else:
            message = str(exc.detail)
        return error_response(status, GENERIC_CODES.get(status, 90000), message, dict(exc.headers or {}))

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> ORJSONResponse:
        # The database refused a value the client sent (a NUL character, a number out of range...):
        # the transaction was rolled back, and it is the client's mistake, so 400 rather than 500.
        log.info("database rejected a value on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(400, 90000, "A value in the request cannot be stored (e.g. a NUL character).")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> ORJSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, 90004, "Unexpected server error; the request changed nothing.")
