"""Absolute URLs for ``href`` fields, built from --public-url or the request."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from bridgehead.config import Settings


def base_url(request: Request, settings: Settings) -> str:
    """``scheme://host[:port]`` with no trailing slash (no ``/v2``)."""
    if settings.public_url:
        return settings.public_url.rstrip("/").removesuffix("/v2")
    scheme = request.url.scheme
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    if settings.forwarded_allow_ips:
        fwd_host = request.headers.get("x-forwarded-host")
        if fwd_host:
            host = fwd_host.split(",")[0].strip()
        fwd_proto = request.headers.get("x-forwarded-proto")
        if fwd_proto:
            scheme = fwd_proto.split(",")[0].strip()
    return f"{scheme}://{host}"


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url
