"""The ``fields`` selector: ``id,name``, ``_all``, ``!metadata``, dotted paths, mixed forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldSelector:
    include: tuple[tuple[str, ...], ...] = ()
    exclude: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def parse(cls, raw: str | None, prefix: str | None = None) -> FieldSelector:
        """Parse a selector; ``prefix`` strips e.g. ``resource.`` used by the bulk calls."""
        if not raw:
            return cls()
        include: list[tuple[str, ...]] = []
        exclude: list[tuple[str, ...]] = []
        for part in raw.split(","):
            part = part.strip()
            if not part or part == "_all":
                continue
            negate = part.startswith("!")
            if negate:
                part = part[1:]
            if prefix and part.startswith(prefix):
                part = part[len(prefix) :]
            path = tuple(p for p in part.split(".") if p)
            if path:
                (exclude if negate else include).append(path)
        return cls(tuple(include), tuple(exclude))

    @property
    def is_noop(self) -> bool:
        return not self.include and not self.exclude

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.is_noop:
            return obj
        out = _pick(obj, self.include) if self.include else dict(obj)
        for path in self.exclude:
            _drop(out, path)
        return out


def _pick(obj: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        src: Any = obj
        for key in path[:-1]:
            src = src.get(key) if isinstance(src, dict) else None
        if not isinstance(src, dict) or path[-1] not in src:
            continue
        dst = out
        for key in path[:-1]:
            dst = dst.setdefault(key, {})
        dst[path[-1]] = src[path[-1]]
    return out


def _drop(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    parent: Any = obj
    for i, key in enumerate(path[:-1]):
        child = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(child, dict):
            return
        child = dict(child)  # copy so that shared nested dicts are never mutated
        parent[key] = child
        parent = child
        del i
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
