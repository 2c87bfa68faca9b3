"""Absolute URLs for ``href`` fields, built from --public-url or the request."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlencode

from starlette.requests import Request

from bridgehead.config import Settings


def base_url(request: Request, settings: Settings) -> str:
    """``scheme://host[:port]`` with no trailing slash (no ``/v2``)."""
    if settings.public_url:
        return settings.public_url.rstrip("/").removesuffix("/v2")
    # Read from the ASGI scope: building request.url parses the whole URL on every request.
    scheme = str(request.scope.get("scheme", "http"))
    host = request.headers.get("host")
    if not host:
        server_host, server_port = request.scope.get("server") or ("localhost", 80)
        host = f"{server_host}:{server_port}"
    if settings.forwarded_allow_ips and _trusted_proxy(request, settings.forwarded_allow_ips):
        fwd_host = request.headers.get("x-forwarded-host")
        if fwd_host:
            host = fwd_host.split(",")[0].strip()
        fwd_proto = request.headers.get("x-forwarded-proto")
        if fwd_proto:
            scheme = fwd_proto.split(",")[0].strip()
    return f"{scheme}://{host}"


@lru_cache(maxsize=8)
def _trusted_networks(allow: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """``*`` trusts every peer (None); otherwise a comma list of addresses or CIDR networks."""
    items = [item.strip() for item in allow.split(",") if item.strip()]
    if "*" in items:
        return None
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue  # a host name: uvicorn ignores those too
    return tuple(networks)


def _trusted_proxy(request: Request, allow: str) -> bool:
    """X-Forwarded-* is honoured only from a peer listed in --forwarded-allow-ips."""
    networks = _trusted_networks(allow)
    if networks is None:
        return True
    peer = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in networks)


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url
