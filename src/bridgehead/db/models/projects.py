from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bridgehead.db.base import Base, UTCDateTime, utcnow
from bridgehead.db.models.users import BillingGroup, User


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("owner", "slug"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    slug: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    category: Mapped[str] = mapped_column(String(32), default="PRIVATE")
    # Marked by an admin: its apps show in the public gallery (visibility=public).
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    billing_group_id: Mapped[str] = mapped_column(ForeignKey("billing_groups.id"))
    root_folder: Mapped[str] = mapped_column(String(24))
    created_by: Mapped[str] = mapped_column(String(64))
    created_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modified_on: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    billing_group: Mapped[BillingGroup] = relationship()
    members: Mapped[list[Member]] = relationship(back_populates="project", cascade="all, delete-orphan")

    @property
    def sbg_id(self) -> str:
        return f"{self.owner}/{self.slug}"


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    read: Mapped[bool] = mapped_column(Boolean, default=True)
    copy: Mapped[bool] = mapped_column(Boolean, default=False)
    write: Mapped[bool] = mapped_column(Boolean, default=False)
    execute: Mapped[bool] = mapped_column(Boolean, default=False)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)

    project: Mapped[Project] = relationship(back_populates="members")
    user: Mapped[User] = relationship()

    PERMISSIONS = ("read", "copy", "write", "execute", "admin")

    def has(self, permission: str) -> bool:
        return self.admin or bool(getattr(self, permission))

    def permissions(self) -> dict[str, bool]:
        if self.admin:
            return dict.fromkeys(self.PERMISSIONS, True)
        return {p: bool(getattr(self, p)) for p in self.PERMISSIONS}
