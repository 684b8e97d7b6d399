"""One adapter per proxy; ``ADAPTERS`` maps proxy names to them, in name order.

Every module of this package but ``base`` defines one :class:`Adapter`
subclass; they are found here, so adding a proxy is adding its module
(docs/architecture.md, "Adding a proxy").
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Adapter, RenderedConfig

__all__ = ["ADAPTERS", "Adapter", "RenderedConfig", "get"]


def _discover() -> dict[str, Adapter]:
    found: dict[str, Adapter] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        classes = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Adapter)
            and value.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise ImportError(f"{module.__name__} must define exactly one Adapter subclass")
        adapter = classes[0]()
        if adapter.name != info.name:
            raise ImportError(f"{module.__name__} defines the adapter {adapter.name!r}")
        found[adapter.name] = adapter
    return dict(sorted(found.items()))


ADAPTERS: dict[str, Adapter] = _discover()


def get(name: str) -> Adapter:
    return ADAPTERS[name]
