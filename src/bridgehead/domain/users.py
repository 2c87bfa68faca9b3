"""Users, API tokens and their default billing groups."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridgehead.db.models import BillingGroup, Token, User
from bridgehead.domain.errors import BadRequest, Conflict, Forbidden, NotFound

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """32 hex characters, the platform's developer-token shape."""
    return secrets.token_hex(16)


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def create_user(session: Session, username: str, *, email: str = "", is_admin: bool = False) -> User:
    if not USERNAME_RE.match(username):
        raise BadRequest(
            f"Invalid username {username!r}: use letters, digits, '_', '.', '-' (at most 64).",
            field="username",
        )
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"User {username!r} already exists.", code=2003)
    user = User(username=username, email=email or f"{username}@localhost", is_admin=is_admin)
    session.add(user)
    session.flush()
    session.add(BillingGroup(owner_id=user.id, name=f"{username} billing group"))
    session.flush()
    return user


def add_token(session: Session, user: User) -> str:
    token = new_token()
    session.add(Token(user_id=user.id, token_hash=hash_token(token)))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    return session.scalar(select(User).join(Token).where(Token.token_hash == hash_token(token)))


def get_by_username(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"User {username!r} does not exist.", code=2002)
    return user


def visible_user(session: Session, caller: User, username: str) -> User:
    """The platform lets a user read only themselves; admins may read anyone."""
    if username != caller.username and not caller.is_admin:
        if session.scalar(select(User.id).where(User.username == username)) is None:
            raise NotFound(f"User {username!r} does not exist.", code=2002)
        raise Forbidden("Insufficient privileges to access the requested user.", code=2001)
    return get_by_username(session, username)


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def default_billing_group(session: Session, user: User) -> BillingGroup:
    group = session.scalar(
        select(BillingGroup)
        .where(BillingGroup.owner_id == user.id)
        .order_by(BillingGroup.created_on)
        .limit(1)
    )
    if group is None:  # users created before billing groups existed
        group = BillingGroup(owner_id=user.id, name=f"{user.username} billing group")
        session.add(group)
        session.flush()
    return group


SbgErrors = (BadRequest, Conflict, Forbidden, NotFound)
