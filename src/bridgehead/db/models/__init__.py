"""All ORM models, imported here so that Alembic and ``Base.metadata`` see every table."""

from bridgehead.db.models.apps import App, AppRevision
from bridgehead.db.models.files import File
from bridgehead.db.models.projects import Member, Project
from bridgehead.db.models.users import BillingGroup, Token, User

__all__ = ["App", "AppRevision", "BillingGroup", "File", "Member", "Project", "Token", "User"]
