"""Task price: computation (cores x hours x price per CPU-hour) plus storage of the outputs for a month."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PriceTable:
    cpu_hour: float = 0.0
    gb_month: float = 0.0


def money(amount: float) -> str:
    return f"{amount:.2f}"


def zero() -> dict[str, Any]:
    return {"currency": "USD", "amount": "0.00", "breakdown": {"storage": "0.00", "computation": "0.00"}}


def price(table: PriceTable, cores: int, seconds: float, output_bytes: int) -> dict[str, Any]:
    computation = max(cores, 1) * max(seconds, 0.0) / 3600.0 * table.cpu_hour
    storage = output_bytes / 1e9 * table.gb_month
    return {
        "currency": "USD",
        "amount": money(computation + storage),
        "breakdown": {"storage": money(storage), "computation": money(computation)},
    }


def total(prices: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Sum of children's prices (a batch parent costs what its children cost)."""
    comp = sum(float((p or {}).get("breakdown", {}).get("computation", 0)) for p in prices)
    stor = sum(float((p or {}).get("breakdown", {}).get("storage", 0)) for p in prices)
    return {
        "currency": "USD",
        "amount": money(comp + stor),
        "breakdown": {"storage": money(stor), "computation": money(comp)},
    }
