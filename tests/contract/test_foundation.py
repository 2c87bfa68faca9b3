"""Users, projects, members and errors through the unmodified sevenbridges-python client."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import pytest
import sevenbridges as sbg
from sevenbridges.errors import BadRequest, Forbidden, NotFound, Unauthorized

from bridgehead.embedded import EmbeddedServer
from tests.conftest import user_api


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_me_returns_the_caller(api: sbg.Api, server: EmbeddedServer) -> None:
    me = api.users.me()
    assert me.username == server.username
    assert me.href == f"{server.url}/users/{server.username}"
    assert me.email
    assert api.users.get(server.username).username == server.username


def test_billing_groups_have_a_default(api: sbg.Api) -> None:
    groups = api.billing_groups.query().all()
    groups = list(groups)
    assert groups, "every user owns a default billing group"
    group = api.billing_groups.get(groups[0].id)
    assert str(group.id) == str(groups[0].id)
    assert group.disabled is False


def test_project_lifecycle(api: sbg.Api, server: EmbeddedServer) -> None:
    group = next(iter(api.billing_groups.query()))
    name = _unique("Lifecycle Project")
    project = api.projects.create(
        name=name, billing_group=group.id, description="first", tags=["a", "b"], settings={"locked": False}
    )
    owner, slug = project.id.split("/")
    assert owner == server.username
    assert slug == name.lower().replace(" ", "-")
    assert project.type == "v2"
    assert project.tags == ["a", "b"]
    assert str(project.billing_group) == str(group.id)
    assert isinstance(project.created_on, datetime)
    assert project.root_folder

    fetched = api.projects.get(project.id)
    assert fetched.name == name
    assert fetched.description == "first"

    fetched.description = "second"
    fetched.tags = ["c"]
    fetched.save()
    again = api.projects.get(project.id)
    assert again.description == "second"
    assert again.tags == ["c"]
    assert again.id == project.id, "the short name never changes"

    found = list(api.projects.query(name=name).all())
    assert [p.id for p in found] == [project.id]
    by_owner = api.projects.query(owner=server.username, name=name)
    assert by_owner.total == 1

    # The same name again gets a distinct id.
    twin = api.projects.create(name=name, billing_group=group.id)
    assert twin.id != project.id
    assert twin.id.startswith(project.id)

    again.delete()
    twin.delete()
    with pytest.raises(NotFound) as info:
        api.projects.get(project.id)
    assert info.value.code == 3002
    assert project.id in (info.value.message or "")


def test_members_and_permissions(api: sbg.Api, server: EmbeddedServer) -> None:
    alice_name, bob_name = _unique("alice"), _unique("bob")
    alice = user_api(server, alice_name)
    bob = user_api(server, bob_name)
    project = alice.projects.create(name=_unique("shared"))

    # Bob is not a member: he cannot see the project at all.
    with pytest.raises(Forbidden) as info:
        bob.projects.get(project.id)
    assert info.value.code == 3001
    assert bob.projects.query(name=project.name).total == 0

    member = project.add_member(bob_name, permissions={"write": True})
    assert member.username == bob_name
    assert member.permissions["read"] is True
    assert member.permissions["write"] is True
    assert member.permissions["execute"] is False

    members = project.get_members()
    assert members.total == 2
    assert {m.username for m in members} == {alice_name, bob_name}

    # Bob can read now but may not manage members (admin only).
    seen = bob.projects.get(project.id)
    assert seen.id == project.id
    with pytest.raises(Forbidden):
        seen.add_member(alice_name, permissions={"read": True})

    # Project.get_member defaults to the most recently built Api (a client quirk): pass alice.
    fetched = project.get_member(bob_name, api=alice)
    fetched.permissions["execute"] = True
    fetched.permissions["write"] = False
    fetched.save()
    after = project.get_member(bob_name, api=alice)
    assert after.permissions["execute"] is True
    assert after.permissions["write"] is False
    # Bob's edits now need write: he has lost it.
    with pytest.raises(Forbidden):
        seen.description = "bob was here"
        seen.save()

    project.remove_member(bob_name)
    with pytest.raises(Forbidden):
        bob.projects.get(project.id)
    with pytest.raises(NotFound) as missing:
        project.get_member(bob_name, api=alice)
    assert missing.value.code == 3002


def test_query_all_pages_across_250_projects(server: EmbeddedServer) -> None:
    owner = _unique("many")
    client = user_api(server, owner)
    for i in range(250):
        client.projects.create(name=f"bulk {i:03d}")
    first = client.projects.query(limit=100)
    assert first.total == 250
    assert len(first) == 100
    everything = list(client.projects.query(limit=100).all())
    assert len(everything) == 250
    assert len({p.id for p in everything}) == 250
    # Default page size is 50 and .all() still walks every page.
    assert len(list(client.projects.query().all())) == 250
    filtered = client.projects.query(name="bulk 01", limit=3)
    assert filtered.total == 10
    assert len(list(filtered.all())) == 10


def test_errors_carry_server_message_and_code(api: sbg.Api, server: EmbeddedServer) -> None:
    with pytest.raises(NotFound) as nf:
        api.projects.get(f"{server.username}/does-not-exist")
    assert nf.value.status == 404 and nf.value.code == 3002
    assert "does-not-exist" in (nf.value.message or "")

    stranger = sbg.Api(url=server.url, token="0" * 32)
    with pytest.raises(Unauthorized) as unauth:
        stranger.users.me()
    assert unauth.value.status == 401 and unauth.value.code == 90001
    assert "token" in (unauth.value.message or "")

    with pytest.raises(BadRequest) as bad:
        api.projects.create(name="x", billing_group="not-a-uuid")
    assert bad.value.status == 400 and bad.value.code == 4005
    assert "billing_group" in (bad.value.message or "") or "not-a-uuid" in (bad.value.message or "")


def test_rate_limit_properties(api: sbg.Api) -> None:
    limit = api.limit
    remaining = api.remaining
    assert isinstance(limit, int) and limit > 0
    assert isinstance(remaining, int) and 0 < remaining <= limit
    reset = api.reset_time
    assert isinstance(reset, datetime)
    assert reset.timestamp() > time.time() - 1
