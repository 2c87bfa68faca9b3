"""Request context: the caller, the database, URL building, ``fields`` and the response helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from bridgehead import jsonutil
from bridgehead.api.fields import FieldSelector
from bridgehead.api.pagination import Page
from bridgehead.api.ratelimit import RateLimiter
from bridgehead.api.urls import base_url, with_query
from bridgehead.config import Settings
from bridgehead.db.models import User
from bridgehead.db.session import Database
from bridgehead.domain import users
from bridgehead.domain.errors import TooManyRequests, Unauthorized

AUTH_CACHE_SECONDS = 5.0


class SbgJSONResponse(JSONResponse):
    """JSON rendered by orjson (FastAPI's ORJSONResponse now warns on every use, which costs time).

    A JSONResponse subclass so that FastAPI documents the route's response model in OpenAPI.
    """

    def render(self, content: Any) -> bytes:
        return jsonutil.dumps(content)


ORJSONResponse = SbgJSONResponse  # the name handlers used before; kept working


@dataclass
class AppState:
    """Everything a request needs that lives as long as the app."""

    settings: Settings
    db: Database
    limiter: RateLimiter
    # Starts a background loop's next pass (``dispatcher`` or ``transfers``): the loops running in this
    # process, or, in an API process of ``serve --workers N``, a datagram to the parent's. None: no
    # loops to wake (``--no-dispatcher``).
    waker: Callable[[str], None] | None = None
    _auth_cache: dict[str, tuple[float, User]] = field(default_factory=dict)
    _auth_lock: threading.Lock = field(default_factory=threading.Lock)

    def user_for_token(self, token: str) -> User | None:
        now = time.monotonic()
        hit = self._auth_cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.db.read() as session:
            user = users.user_for_token(session, token)
            if user is not None:
                session.expunge(user)
        if user is not None:
            with self._auth_lock:
                if len(self._auth_cache) > 10_000:
                    self._auth_cache.clear()
                self._auth_cache[token] = (now + AUTH_CACHE_SECONDS, user)
        return user

    def wake(self, kind: str) -> None:
        """Start the named loop's next pass now, wherever it runs."""
        if self.waker is not None:
            self.waker(kind)

    def forget_tokens(self) -> None:
        with self._auth_lock:
            self._auth_cache.clear()


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.bridgehead
    return state


def token_from(request: Request) -> str | None:
    token = request.headers.get("x-sbg-auth-token")
    if token:
        return token.strip()
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def authenticate(request: Request, state: AppState) -> User:
    """The caller from its token, counted against its rate limit (401/429 as SBG errors)."""
    token = token_from(request)
    if not token:
        raise Unauthorized("Missing authentication token: send the X-SBG-Auth-Token header.")
    user = state.user_for_token(token)
    if user is None:
        raise Unauthorized("The authentication token is not valid.")
    counts = request.scope["path"] != "/v2/rate_limit"  # scope, not request.url: no URL parsing
    allowed, rate = state.limiter.hit(user.id, count=counts)
    request.state.rate = rate
    if counts and not allowed:
        err = TooManyRequests(
            f"Rate limit exceeded: {rate.limit} requests per {state.limiter.window} s. "
            "See the X-RateLimit-Reset header."
        )
        # The X-RateLimit-* headers come from the middleware (request.state.rate), once each.
        err.headers = {"Retry-After": str(max(1, rate.reset - int(time.time())))}
        raise err
    return user


async def current_user(request: Request) -> User:
    return authenticate(request, app_state(request))


class Ctx:
    """Per-request helpers handed to every v2 handler."""

    def __init__(self, request: Request, state: AppState, user: User, fields: str | None) -> None:
        self.request = request
        self.state = state
        self.settings = state.settings
        self.db = state.db
        self.user = user
        self.fields = FieldSelector.parse(fields)
        self.root = base_url(request, state.settings)
        self.api = self.root + "/v2"

    def href(self, path: str) -> str:
        return self.api + path

    def one(self, data: dict[str, Any], status: int = 200) -> Response:
        return ORJSONResponse(self.fields.apply(data), status_code=status)

    def raw(self, data: Any, status: int = 200) -> Response:
        return ORJSONResponse(data, status_code=status)

    def page(self, items: list[dict[str, Any]], total: int, page: Page) -> Response:
        """The collection envelope; ``href`` and links keep every filter of the request."""
        path = self.api + self.request.url.path.removeprefix("/v2").rstrip("/")
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k not in ("offset", "limit")]
        here = [*params, ("offset", str(page.offset)), ("limit", str(page.limit))]
        links = []
        if page.offset + page.limit < total:
            nxt = [*params, ("offset", str(page.offset + page.limit)), ("limit", str(page.limit))]
            links.append({"href": with_query(path, nxt), "rel": "next", "method": "GET"})
        if page.offset > 0:
            prv = [*params, ("offset", str(max(0, page.offset - page.limit))), ("limit", str(page.limit))]
            links.append({"href": with_query(path, prv), "rel": "prev", "method": "GET"})
        body = {
            "href": with_query(path, here),
            "items": [self.fields.apply(i) for i in items],
            "links": links,
        }
        return ORJSONResponse(body, headers={"X-Total-Matching-Query": str(total)})

    @staticmethod
    def no_content() -> Response:
        return Response(status_code=204)


async def get_ctx(
    request: Request,
    fields: Annotated[str | None, Query(description="selector: id,name | _all | !field")] = None,
) -> Ctx:
    # Authentication is called directly rather than as a sub-dependency: one dependency level less
    # to solve on every request.
    state = app_state(request)
    return Ctx(request, state, authenticate(request, state), fields)


CtxDep = Annotated[Ctx, Depends(get_ctx)]
