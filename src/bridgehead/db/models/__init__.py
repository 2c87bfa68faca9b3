"""All ORM models. Every model module is imported here so that Alembic and ``Base.metadata`` see it.

Import model classes from their own module (``from bridgehead.db.models.tasks import Task``);
the foundation classes are re-exported here for convenience.
"""

from bridgehead.db.models import cluster, execution, tasks, uploads, volumes  # noqa: F401
from bridgehead.db.models.apps import App, AppRevision
from bridgehead.db.models.files import File
from bridgehead.db.models.projects import Member, Project
from bridgehead.db.models.users import BillingGroup, Token, User

__all__ = ["App", "AppRevision", "BillingGroup", "File", "Member", "Project", "Token", "User"]
