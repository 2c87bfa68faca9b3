"""JSON encoding on hot paths: orjson, with the standard library for what orjson refuses.

orjson rejects integers beyond 64 bits, which CWL documents may carry (a ``long`` default, an input
value); the standard library writes them exactly, so such a value costs speed, never an error.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; non-string keys become strings as with ``json.dumps``."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        if "Integer exceeds" not in str(exc):
            raise
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
