"""The page the ``browser.*`` checks load through the proxy (``/browser``).

One static HTML document with inline script; the query picks what it does
(``mode``) and the script only reads its parameters from ``location.search``,
so nothing from a request is ever written into the document. The script
publishes what happened in ``window.proxytest`` (``done`` once it is over),
which the probe polls over the DevTools protocol (probes/browser.py). Times are
milliseconds since the page's script started (``performance.now()``).

``mode=eventsource``: one ``EventSource`` on ``sse`` (a path with its query),
closed once an event with id ``until`` or higher arrived, or after ``limit_ms``.
Records each open, each ``tick`` event's id, each error (with the last id the
page had then: what the reconnect must send as ``Last-Event-ID``).

``mode=websocket``: one ``WebSocket`` on ``socket`` (a path; ws: or wss: as the
page), sends a text message and a ``binary`` byte binary message, checks both
echoes byte for byte, then closes with 1000. Records open, echoes, the close
code and whether it was clean.

``mode=limit``: ``n`` EventSources on ``sse`` (``&stream=<i>`` appended),
records which opened and when; ``window.proxytestCloseOne()`` closes the first
that is open (the probe calls it to see whether a waiting one then opens).
"""

from __future__ import annotations

__all__ = ["BROWSER_PAGE"]

BROWSER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>proxytest browser check</title>
<link rel="icon" href="data:,">
</head>
<body>
<p>proxytest: a browser check runs on this page.</p>
<script>
"use strict";
(() => {
  const q = new URLSearchParams(location.search);
  const now = () => Math.round(performance.now() * 10) / 10;
  const nav = performance.getEntriesByType("navigation")[0];
  const r = window.proxytest = {
    done: false, mode: q.get("mode"), end: null,
    page_protocol: nav ? nav.nextHopProtocol : null, started: now(),
  };
  const limit = Number(q.get("limit_ms") || 10000);
  const finish = (end) => { if (!r.done) { r.end = end; r.done = true; } };

  if (r.mode === "eventsource") {
    const until = Number(q.get("until"));
    r.created = now(); r.opens = []; r.events = []; r.errors = [];
    let last = null;
    const es = new EventSource(q.get("sse"));
    es.onopen = () => r.opens.push(now());
    es.addEventListener("tick", (e) => {
      if (r.events.length === 0) r.first_event = now();
      r.events.push(e.lastEventId);
      last = e.lastEventId;
      if (Number(e.lastEventId) >= until) { es.close(); finish("complete"); }
    });
    es.onerror = () => {
      r.errors.push({at: now(), last: last, state: es.readyState});
      if (es.readyState === EventSource.CLOSED) finish("gave-up");
    };
    setTimeout(() => { es.close(); finish("timeout"); }, limit);
  } else if (r.mode === "websocket") {
    const size = Number(q.get("binary") || 65536);
    const text = "proxytest-" + Math.random().toString(36).slice(2) + "-\\u00e9\\u6f22";
    const binary = new Uint8Array(size);
    for (let i = 0; i < size; i++) binary[i] = (i * 7 + 3) % 251;
    r.created = now(); r.opened = null; r.text_echoed = null; r.binary_echoed = null;
    r.close_code = null; r.close_reason = null; r.was_clean = null; r.errors = 0;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    r.url = scheme + "//" + location.host + q.get("socket");
    const ws = new WebSocket(r.url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { r.opened = now(); ws.send(text); ws.send(binary.buffer); };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") { r.text_echoed = e.data === text; }
      else {
        const got = new Uint8Array(e.data);
        r.binary_echoed = got.length === size && got.every((b, i) => b === binary[i]);
      }
      if (r.text_echoed !== null && r.binary_echoed !== null) ws.close(1000, "done");
    };
    ws.onerror = () => { r.errors += 1; };
    ws.onclose = (e) => {
      r.close_code = e.code; r.close_reason = e.reason; r.was_clean = e.wasClean;
      r.closed = now(); finish("closed");
    };
    setTimeout(() => { ws.close(); finish("timeout"); }, limit);
  } else if (r.mode === "limit") {
    const n = Number(q.get("n") || 7);
    r.streams = [];
    const sources = [];
    for (let i = 0; i < n; i++) {
      const s = {stream: i, opened: null, first_event: null, errors: 0, closed_by_page: false};
      r.streams.push(s);
      const es = new EventSource(q.get("sse") + "&stream=" + i);
      sources.push(es);
      es.onopen = () => { if (s.opened === null) s.opened = now(); };
      es.addEventListener("tick", () => { if (s.first_event === null) s.first_event = now(); });
      es.onerror = () => { s.errors += 1; };
    }
    window.proxytestCloseOne = () => {
      const i = r.streams.findIndex((s) => s.opened !== null && !s.closed_by_page);
      if (i < 0) return null;
      sources[i].close(); r.streams[i].closed_by_page = true; r.closed_one = now();
      return i;
    };
    window.proxytestCloseAll = () => { sources.forEach((es) => es.close()); finish("closed"); };
    setTimeout(() => { window.proxytestCloseAll(); finish("timeout"); }, limit);
  } else {
    finish("unknown mode");
  }
})();
</script>
</body>
</html>
"""
