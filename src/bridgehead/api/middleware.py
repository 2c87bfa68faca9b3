"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path).

- strips a trailing slash so ``/projects/`` and ``/upload/multipart/{id}/part/`` route like their twins;
- adds ``X-Request-Id`` and the ``X-RateLimit-*`` headers to every response;
- optionally records which route template answered (``--route-log``, used for docs/fidelity.md).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridgehead.api.ratelimit import RateLimiter


class SbgHeadersMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter, route_log: Path | None = None) -> None:
        self.app = app
        self.limiter = limiter
        # O_APPEND: several servers (one per test module) may share the file; each line is one write.
        self._route_log = (
            os.open(route_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if route_log else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            scope = dict(scope)
            scope["path"] = path.rstrip("/") or "/"
            raw = scope.get("raw_path")
            if raw:
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        request_id = uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-ratelimit-limit" for name, _ in headers):
                    rate = state.get("rate") or self.limiter.peek(None)
                    headers.extend(rate.headers())
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
                if self._route_log is not None:
                    self._log_route(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _log_route(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "-"
        os.write(self._route_log or 0, f"{scope['method']} {template} {status}\n".encode())
