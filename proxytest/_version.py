"""The package version, read once from the installed distribution's metadata.

pyproject.toml is the only place it is written. A source tree that is not
installed (no metadata) reports ``0+unknown`` rather than a made-up number.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["VERSION"]

try:
    VERSION = metadata.version("proxytest")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0+unknown"
