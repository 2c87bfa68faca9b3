"""Engine registry: ``get_engine(settings)`` builds the configured engine.

Engines are imported lazily by name so that the fake engine (and the API) never import cwltool or
Toil, and an engine module can be added without touching the others.
"""

from __future__ import annotations

import importlib
from typing import cast

from bridgehead.config import Settings
from bridgehead.engines.base import Engine

REGISTRY: dict[str, str] = {
    "fake": "bridgehead.engines.fake:FakeEngine",
    "local": "bridgehead.engines.local:LocalEngine",
    "toil": "bridgehead.engines.toil:ToilEngine",
    "slurm": "bridgehead.engines.slurm:SlurmEngine",
}


def get_engine(settings: Settings, name: str | None = None) -> Engine:
    """A new engine instance for ``name`` (default: ``settings.engine``); each takes the settings."""
    chosen = name or settings.engine
    target = REGISTRY.get(chosen)
    if target is None:
        raise ValueError(f"unknown engine {chosen!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cast(Engine, cls(settings))
