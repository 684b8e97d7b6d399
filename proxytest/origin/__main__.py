"""Run the test origin by itself: ``python -m proxytest.origin [--host H ...] [--port P]``."""

import argparse
import asyncio
import contextlib

from .server import serve_forever

parser = argparse.ArgumentParser(prog="python -m proxytest.origin", description=__doc__)
parser.add_argument(
    "--host",
    action="append",
    help="address to listen on, repeatable (same port on each; default 127.0.0.1)",
)
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()
with contextlib.suppress(KeyboardInterrupt):
    asyncio.run(serve_forever(args.host or ["127.0.0.1"], args.port))
