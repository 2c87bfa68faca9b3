"""Bad input on every foundation endpoint: the right status, an SBG error body naming the field, no change.

Each case runs between two snapshots of every table of the server's database, so a request that
fails half-way and leaves a row behind is caught.
"""

from __future__ import annotations

import json
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bridgehead.embedded import EmbeddedServer
from tests.support.dbstate import snapshot
from tests.support.sbg import assert_sbg_error

LONG = "x" * 256
MISSING = "11111111-2222-3333-4444-555555555555"


@dataclass
class World:
    project: str
    admin_group: str
    outsider_group: str
    tokens: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(server: EmbeddedServer, http: httpx.Client) -> World:
    suffix = uuid.uuid4().hex[:6]
    reader, outsider = f"reader{suffix}", f"outsider{suffix}"
    tokens = {
        "admin": server.token,
        "reader": server.create_user(reader),
        "outsider": server.create_user(outsider),
    }
    project = http.post("/projects", json={"name": f"bad input {suffix}"}).json()["id"]
    added = http.post(
        f"/projects/{project}/members", json={"username": reader, "permissions": {"read": True}}
    )
    assert added.status_code == 201
    admin_group = http.get("/billing/groups").json()["items"][0]["id"]
    outsider_groups = http.get("/billing/groups", headers={"X-SBG-Auth-Token": tokens["outsider"]})
    w = World(project, admin_group, outsider_groups.json()["items"][0]["id"], tokens)
    w.tokens["reader_name"] = reader
    w.tokens["outsider_name"] = outsider
    return w


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    code: int | None = None
    body: Any = None
    raw: bytes | None = None
    params: dict[str, Any] | None = None
    who: str | None = "admin"  # None: no token at all
    mentions: str | None = None  # a word the message must contain (usually the field)

    def id(self) -> str:
        return f"{self.method} {self.path} {self.who} {self.status} {self.mentions or ''}".strip()


P = "/projects/{p}"
FOUNDATION_ROUTES = [
    ("GET", "/"),
    ("GET", "/user"),
    ("GET", "/users"),
    ("GET", "/users/{reader_name}"),
    ("GET", "/rate_limit"),
    ("GET", "/billing/groups"),
    ("GET", "/billing/groups/{bg}"),
    ("GET", "/projects"),
    ("GET", "/projects/{owner}"),
    ("POST", "/projects"),
    ("GET", P),
    ("PATCH", P),
    ("DELETE", P),
    ("GET", P + "/members"),
    ("POST", P + "/members"),
    ("GET", P + "/members/{reader_name}"),
    ("PATCH", P + "/members/{reader_name}/permissions"),
    ("DELETE", P + "/members/{reader_name}"),
]

CASES: list[Case] = [
    # missing or wrong token, everywhere
    *[Case(m, path, 401, 90001, who=None, mentions="token") for m, path in FOUNDATION_ROUTES],
    *[Case(m, path, 401, 90001, who="bogus", mentions="token") for m, path in FOUNDATION_ROUTES[:3]],
    # unknown ids
    Case("GET", "/users/nobody-here", 404, 2002, mentions="nobody-here"),
    Case("GET", f"/billing/groups/{MISSING}", 404, 4002),
    Case("GET", "/billing/groups/not-a-uuid", 400, 4005, mentions="not-a-uuid"),
    Case("GET", "/projects/{owner}/no-such-project", 404, 3002, mentions="no-such-project"),
    Case("PATCH", "/projects/{owner}/no-such-project", 404, 3002, body={"name": "x"}),
    Case("DELETE", "/projects/{owner}/no-such-project", 404, 3002),
    Case("GET", "/projects/{owner}/no-such-project/members", 404, 3002),
    Case("POST", "/projects/{owner}/no-such-project/members", 404, 3002, body={"username": "x"}),
    Case("GET", P + "/members/nobody-here", 404, 3002, mentions="nobody-here"),
    Case("PATCH", P + "/members/nobody-here/permissions", 404, 3002, body={"write": True}),
    Case("DELETE", P + "/members/nobody-here", 404, 3002),
    Case("POST", P + "/members", 404, 2002, body={"username": "nobody-here"}, mentions="nobody-here"),
    Case("POST", P + "/members", 404, 2002, body={"email": "nobody@nowhere.test"}, mentions="email"),
    # names: empty, blank, too long, control characters (PostgreSQL cannot store NUL)
    Case("POST", "/projects", 400, 3007, body={"name": "a\u0000b"}, mentions="control"),
    Case("PATCH", P, 400, 3007, body={"name": "tab\there"}, mentions="control"),
    Case("POST", "/projects", 400, 3007, body={"name": ""}, mentions="name"),
    Case("POST", "/projects", 400, 3007, body={"name": "   "}, mentions="name"),
    Case("POST", "/projects", 400, 3007, body={"name": LONG}, mentions="255"),
    Case("PATCH", P, 400, 3007, body={"name": LONG}, mentions="255"),
    Case("PATCH", P, 400, 3007, body={"name": ""}, mentions="name"),
    # wrong types
    Case("POST", "/projects", 400, body={"name": 5}, mentions="name"),
    Case("POST", "/projects", 400, body={"name": "x", "tags": "a"}, mentions="tags"),
    Case("POST", "/projects", 400, body={"name": "x", "tags": [1]}, mentions="tags"),
    Case("POST", "/projects", 400, body={"name": "x", "settings": []}, mentions="settings"),
    Case("POST", "/projects", 400, body={"name": "x", "description": {}}, mentions="description"),
    Case("POST", "/projects", 400, 3010, body={"name": "x", "type": "v9"}, mentions="v2"),
    Case("POST", "/projects", 400, body=["name"]),
    Case("POST", "/projects", 400, body={}, mentions="name"),
    Case("POST", "/projects", 400, body=None, mentions="name"),
    Case("PATCH", P, 400, body={"tags": "a"}, mentions="tags"),
    Case("PATCH", P, 400, body={"settings": "locked"}, mentions="settings"),
    Case("PATCH", P, 400, body={"name": ["x"]}, mentions="name"),
    Case("POST", P + "/members", 400, 3005, body={}, mentions="username"),
    Case("POST", P + "/members", 400, body={"username": 5}, mentions="username"),
    Case("POST", P + "/members", 400, body={"username": "{outsider_name}", "type": "TEAM"}, mentions="type"),
    Case("POST", P + "/members", 400, body={"username": "{outsider_name}", "permissions": "all"}),
    Case(
        "POST",
        P + "/members",
        400,
        body={"username": "{outsider_name}", "permissions": {"write": "yes"}},
        mentions="permissions.write",
    ),
    Case("PATCH", P + "/members/{reader_name}/permissions", 400, body={"admin": "yes"}, mentions="admin"),
    Case("PATCH", P + "/members/{reader_name}/permissions", 400, body=[True], mentions="body"),
    # billing groups that are malformed, missing or not the caller's
    Case("POST", "/projects", 400, 4005, body={"name": "x", "billing_group": "abc"}, mentions="abc"),
    Case("POST", "/projects", 404, 4002, body={"name": "x", "billing_group": MISSING}),
    Case("POST", "/projects", 403, 4006, body={"name": "x", "billing_group": "{bg}"}, who="reader"),
    Case("PATCH", P, 403, 3001, body={"billing_group": "{obg}"}, who="reader", mentions="admin"),
    Case("PATCH", P, 400, 4005, body={"billing_group": "abc"}),
    # malformed JSON
    *[
        Case(m, path, 400, 90009, raw=b'{"name": "x",', mentions="JSON")
        for m, path in [
            ("POST", "/projects"),
            ("PATCH", P),
            ("POST", P + "/members"),
            ("PATCH", P + "/members/{reader_name}/permissions"),
        ]
    ],
    # bad paging on every collection
    *[
        Case("GET", path, 400, 90000, params=params, mentions=name)
        for path in ["/projects", "/projects/{owner}", "/billing/groups", P + "/members", "/users"]
        for name, params in [
            ("limit", {"limit": "ten"}),
            ("limit", {"limit": 0}),
            ("offset", {"offset": -5}),
            ("offset", {"offset": 10**20}),
        ]
    ],
    # permissions: outsiders see nothing, readers change nothing
    Case("GET", P, 403, 3001, who="outsider"),
    Case("PATCH", P, 403, 3001, body={"description": "mine now"}, who="outsider"),
    Case("DELETE", P, 403, 3001, who="outsider"),
    Case("GET", P + "/members", 403, 3001, who="outsider"),
    Case("POST", P + "/members", 403, 3001, body={"username": "{outsider_name}"}, who="outsider"),
    Case("PATCH", P, 403, 3001, body={"description": "reader edit"}, who="reader", mentions="write"),
    Case("DELETE", P, 403, 3001, who="reader", mentions="admin"),
    Case("POST", P + "/members", 403, 3001, body={"username": "{outsider_name}"}, who="reader"),
    Case("PATCH", P + "/members/{reader_name}/permissions", 403, 3001, body={"admin": True}, who="reader"),
    Case("DELETE", P + "/members/{reader_name}", 403, 3001, who="reader"),
    Case("GET", "/users/{reader_name}", 403, 2001, who="outsider"),
    Case("GET", "/billing/groups/{bg}", 403, 4001, who="outsider"),
    # conflicts and invariants
    Case("POST", P + "/members", 409, 3003, body={"username": "{reader_name}"}, mentions="already"),
    Case("DELETE", P + "/members/{owner}", 400, 3011, mentions="last admin"),
]


def _fill(text: str, world: World, server: EmbeddedServer) -> str:
    return text.format(
        p=world.project,
        owner=server.username,
        bg=world.admin_group,
        obg=world.outsider_group,
        reader_name=world.tokens["reader_name"],
        outsider_name=world.tokens["outsider_name"],
    )


def _fill_body(body: Any, world: World, server: EmbeddedServer) -> Any:
    if isinstance(body, str):
        return _fill(body, world, server)
    if isinstance(body, dict):
        return {k: _fill_body(v, world, server) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill_body(v, world, server) for v in body]
    return body


@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_bad_input_is_rejected_and_changes_nothing(
    case: Case, server: EmbeddedServer, world: World, ssl_context: ssl.SSLContext
) -> None:
    headers = {"Content-Type": "application/json"}
    if case.who == "bogus":
        headers["X-SBG-Auth-Token"] = "0123456789abcdef" * 2
    elif case.who is not None:
        headers["X-SBG-Auth-Token"] = world.tokens[case.who]
    if case.raw is not None:
        content = case.raw
    else:
        content = json.dumps(_fill_body(case.body, world, server)).encode()
    before = snapshot(server.resolved_database_url)
    resp = httpx.request(
        case.method,
        server.url + _fill(case.path, world, server),
        content=content,
        params=case.params,
        headers=headers,
        verify=ssl_context,
    )
    body = assert_sbg_error(resp, case.status, case.code)
    if case.mentions:
        assert _fill(case.mentions, world, server) in body["message"], body
    assert snapshot(server.resolved_database_url) == before, "a rejected request changed the database"


def test_the_world_still_works(http: httpx.Client, world: World) -> None:
    """The fixtures above were not damaged by the bad requests: the project and its reader are intact."""
    members = http.get(f"/projects/{world.project}/members").json()["items"]
    assert {m["username"] for m in members} == {
        http.get("/user").json()["username"],
        world.tokens["reader_name"],
    }
