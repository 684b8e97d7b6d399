"""One adapter per proxy; ``ADAPTERS`` maps proxy names to them."""

from __future__ import annotations

from .base import Adapter, RenderedConfig
from .caddy import Caddy
from .envoy import Envoy
from .haproxy import HAProxy
from .nginx import Nginx
from .traefik import Traefik

__all__ = ["ADAPTERS", "Adapter", "RenderedConfig", "get"]

ADAPTERS: dict[str, Adapter] = {
    a.name: a for a in (Nginx(), HAProxy(), Envoy(), Traefik(), Caddy())
}


def get(name: str) -> Adapter:
    return ADAPTERS[name]
