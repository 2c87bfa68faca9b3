"""The OpenAPI document: generated from the app, adjusted to what the server really sends.

``python -m bridgehead.openapi`` prints it with sorted keys so that the committed ``openapi.json``
changes only when the wire contract does (``make openapi`` regenerates it; a test compares them).

FastAPI describes validation failures as 422 ``HTTPValidationError``; bridgehead answers every error
with the Seven Bridges body and a 4xx/5xx status, so those entries are replaced by the real shape.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "description": "Every error, whatever the status: the Seven Bridges error body.",
    "required": ["status", "code", "message", "more_info"],
    "properties": {
        "status": {"type": "integer", "description": "the HTTP status, repeated"},
        "code": {"type": "integer", "description": "the platform's status code (e.g. 3002, 90001)"},
        "message": {"type": "string", "description": "what went wrong, naming the field"},
        "more_info": {"type": "string", "description": "link to the status code table"},
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
COMMON_ERRORS = {
    "400": "Bad request: malformed JSON, a wrong type or a missing field (the message names it)",
    "401": "Missing or invalid token",
    "403": "Not allowed (not a member, or a permission is missing)",
    "404": "No such resource",
    "429": "Rate limit exceeded; see X-RateLimit-Reset and Retry-After",
}
RATE_HEADERS = {
    "X-RateLimit-Limit": "requests allowed per window",
    "X-RateLimit-Remaining": "requests left in the current window",
    "X-RateLimit-Reset": "end of the current window, epoch seconds",
    "X-Request-Id": "identifies this request in the server log",
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def document(app: FastAPI) -> dict[str, Any]:
    """The adjusted document for ``app`` (pure: the app's own cached schema is not modified)."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=[
            {"name": "users", "description": "The caller, users, rate limit and the root resource"},
            {"name": "billing", "description": "Billing groups (one default group per user)"},
            {"name": "projects", "description": "Projects (`owner/slug`) and their members"},
        ],
    )
    doc["servers"] = [{"url": "/", "description": "this server; every API path starts with /v2"}]
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    doc["components"]["securitySchemes"] = {
        "SbgToken": {"type": "apiKey", "in": "header", "name": "X-SBG-Auth-Token"},
        "Bearer": {"type": "http", "scheme": "bearer"},
    }
    doc["security"] = [{"SbgToken": []}, {"Bearer": []}]
    doc["components"]["headers"] = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in RATE_HEADERS.items()
    }
    headers = {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_HEADERS}
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, text in COMMON_ERRORS.items():
                responses.setdefault(status, _error_response(text))
            for response in responses.values():
                response.setdefault("headers", {}).update(headers)
            if path == "/v2" or path.startswith("/v2/"):
                continue
            operation["security"] = []
    return doc


def build_app() -> FastAPI:
    """The app as documented: fixed settings (never the environment's), no database connection made."""
    from bridgehead.config import Settings
    from bridgehead.main import create_app

    # The URL is never connected to (no lifespan runs); in-memory SQLite would reject the pool options.
    return create_app(Settings(database_url="sqlite:///never-opened.db", dispatcher=False))


def render(app: FastAPI | None = None) -> str:
    """The document as deterministic JSON text (sorted keys, two-space indent, final newline)."""
    doc = document(app or build_app())
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
