from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bridgehead.db.models import BillingGroup, User


class UserOut(BaseModel):
    href: str
    username: str
    email: str
    first_name: str
    last_name: str
    affiliation: str
    phone: str = ""
    address: str = ""
    city: str = ""
    state: str = ""
    country: str = ""
    zip_code: str = ""
    role: str


def user_out(api: str, user: User) -> dict[str, Any]:
    return {
        "href": f"{api}/users/{user.username}",
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "affiliation": user.affiliation,
        "phone": "",
        "address": "",
        "city": "",
        "state": "",
        "country": "",
        "zip_code": "",
        "role": "ADMIN" if user.is_admin else "MEMBER",
    }


class Balance(BaseModel):
    currency: str
    amount: float


class BillingGroupOut(BaseModel):
    href: str
    id: str
    owner: str
    name: str
    type: str
    pending: bool
    disabled: bool
    balance: Balance


def billing_group_out(api: str, group: BillingGroup) -> dict[str, Any]:
    return {
        "href": f"{api}/billing/groups/{group.id}",
        "id": group.id,
        "owner": group.owner.username,
        "name": group.name,
        "type": "regular",
        "pending": False,
        "disabled": False,
        "balance": {"currency": "USD", "amount": 0.0},
    }
