"""browser.* through real proxies over TLS: whether Chromium gets HTTP/2, and RFC 8441.

HAProxy with ``alpn h2,http/1.1`` advertises extended CONNECT, so Chromium
opens its WebSocket as an h2 stream (tests/configs/haproxy-tls-h2.cfg); nginx
1.31 has no RFC 8441, so over the same h2 page Chromium falls back to an
HTTP/1.1 WebSocket on its own connection (proxies/nginx/tls.conf). Both serve
the page over h2, so all 7 EventSources open. One run, both targets, one
Chromium, closed with the run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import BinaryNotFound
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.results import Verdict
from proxytest.runner import run_targets
from proxytest.runtimes.local import MARKER, RUN_DIR_PREFIX
from proxytest.runtimes.owner import RUN_ID

from ..browser import browser_or_skip
from ..conftest import ROOT

pytestmark = pytest.mark.asyncio

TARGETS = {
    "haproxy": ROOT / "tests" / "configs" / "haproxy-tls-h2.cfg",
    "nginx": ROOT / "proxies" / "nginx" / "tls.conf",
}


def _this_runs_chromium_dirs() -> list[Path]:
    found = []
    for path in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}chromium-*"):
        try:
            marker = json.loads((path / MARKER).read_text())
        except (OSError, ValueError):
            continue
        if marker.get("run") == RUN_ID:
            found.append(path)
    return found


async def test_chromium_uses_h2_websockets_through_haproxy_and_http1_through_nginx() -> None:
    browser_or_skip()
    for proxy in TARGETS:
        try:
            ADAPTERS[proxy].find_binary(None)
        except BinaryNotFound as exc:
            pytest.skip(exc.problem)
    targets = [TargetSpec(proxy, "tls", (config,)) for proxy, config in TARGETS.items()]
    options = RunOptions.from_matrix(checks=["browser.*"], max_hold=3)
    run = await run_targets(targets, options)
    results = {(t.proxy, r.check): r for t in run.targets for r in t.results}
    verdicts = {k: r.verdict for k, r in results.items()}
    assert set(verdicts.values()) == {Verdict.PASS}, {k: r.summary for k, r in results.items()}

    haproxy = results["haproxy", "browser.websocket"].metrics
    assert (haproxy["page_protocol"], haproxy["websocket_over_h2"]) == ("h2", True)
    assert haproxy["handshake_status"] == 200
    nginx = results["nginx", "browser.websocket"].metrics
    assert (nginx["page_protocol"], nginx["websocket_over_h2"]) == ("h2", False)
    assert nginx["handshake_status"] == 101
    for proxy in TARGETS:
        limit = results[proxy, "browser.connection-limit"].metrics
        assert (limit["opened"], limit["page_protocol"]) == (7, "h2")
        es = results[proxy, "browser.eventsource"].metrics
        assert (es["lost"], es["duplicated"], es["page_protocol"]) == (0, 0, "h2")
    assert _this_runs_chromium_dirs() == []  # the run's Chromium and its profile are gone
