"""``python -m proxytest.origin.health [URL]``: is the origin here ready? Exit 0 or 1.

The container image's HEALTHCHECK and the Kubernetes probes run it inside the
origin's container: it asks the ready route (default
``http://127.0.0.1:8080/__proxytest/ready``; give the URL for another port or a
``--prefix``) with the token from ``$PROXYTEST_ORIGIN_TOKEN``, and succeeds on a
200 that carries the origin's identity header. Over https it does not verify the
certificate: it is issued for the public name, and the check stays on loopback.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from ..routes import READY_PATH
from .cli import DEFAULT_PORT, TOKEN_ENV
from .server import ORIGIN_HEADER, TOKEN_HEADER

__all__ = ["DEFAULT_URL", "main"]

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}{READY_PATH}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else DEFAULT_URL
    token = os.environ.get(TOKEN_ENV)
    request = urllib.request.Request(url, headers={TOKEN_HEADER: token} if token else {})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=3, context=context) as response:
            origin = response.headers.get(ORIGIN_HEADER)
            if response.status == 200 and origin:
                print(f"ready: {origin}")
                return 0
            print(f"{url}: {response.status} without {ORIGIN_HEADER}: not a proxytest origin")
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.reason}")
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
