"""Paths of the test origin that layers below it name too.

The origin (origin/server.py) serves them; an adapter that must route a
request to the origin's ready route (Traefik's reload confirmation) names it
from here rather than importing the origin.
"""

READY_PATH = "/__proxytest/ready"  # 200 with the origin's id: a request reached *this* origin
BROWSER_PATH = "/browser"  # the browser.* checks' page (origin/page.py)
HANDSHAKE_PATH = "/lb/handshake"  # a long-polling session held by one backend (origin/sessions.py)
POLL_PATH = "/lb/poll"  # ?sid=S: 200 on the backend holding S, 400 on any other
RECORDS_PATH = "/__proxytest/records"  # ?probe=P: what the origin recorded for P, as JSON
HEADERS_PATH = "/sec/headers"  # the request's headers as the origin saw them (http.hop-by-hop)
