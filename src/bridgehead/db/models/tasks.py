"""ORM models for tasks (tables are created by this module's own migration)."""

from __future__ import annotations
