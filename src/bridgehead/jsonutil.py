"""JSON on hot paths: orjson, with the standard library for what orjson gets wrong.

orjson rejects integers beyond 64 bits when writing and turns them into floats when reading; CWL
documents may carry such values (a ``long`` default, an input value). The standard library handles
them exactly, so such a value costs speed, never an error or a changed number.
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


# 19 digits in a row may be an integer orjson would read as a float (2**63 has 19 digits). They are
# found by mapping every digit to "0" and everything else to " " and looking for nineteen "0": five
# times faster than the regular expression ``\d{19}``, which cost more than orjson's parsing.
_DIGITS_ONLY = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_RUN = b"0" * 19


def loads(text: str | bytes | memoryview) -> Any:
    """Parse JSON (the database's JSON columns); exact for integers of any size."""
    raw = text.encode() if isinstance(text, str) else text if isinstance(text, bytes) else bytes(text)
    if _LONG_RUN in raw.translate(_DIGITS_ONLY):
        return json.loads(raw)
    return orjson.loads(raw)


def dumps_text(value: Any) -> str:
    """``dumps`` as text, for drivers that bind JSON as a string."""
    return dumps(value).decode()
