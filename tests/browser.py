"""A headless Chromium for the tests: the package's own driver (probes/cdp.py).

Chromium is started by runtimes/browser.py (a process group of its own, dies
with the test run) and spoken to over the DevTools protocol; only Debian's
``chromium`` package is needed. :func:`browser_or_skip` is how a test that needs
it asks: a skip saying how to install one, or a failure under
``PROXYTEST_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import os

import pytest

from proxytest.probes.cdp import REQUIRE_ENV, Page
from proxytest.probes.cdp import headless_page as headless_chromium
from proxytest.runtimes.browser import INSTALL_HINT, chromium_binary

__all__ = ["Page", "browser_or_skip", "chromium_binary", "headless_chromium"]


def browser_or_skip() -> str:
    """The Chromium binary; skip the test without one (fail where one is required)."""
    binary = chromium_binary()
    if binary is None:
        why = f"no Chromium found ({INSTALL_HINT})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {why}")
        pytest.skip(why)
    return binary
