"""Launchers run a proxy process and share one small interface.

A launcher is an async context manager that starts the proxy and yields a
:class:`~proxytest.launchers.base.Running` handle; leaving it stops the proxy,
whatever happened inside.
"""

from .base import LaunchSpec, Running
from .local import launch_local

__all__ = ["LaunchSpec", "Running", "launch_local"]
