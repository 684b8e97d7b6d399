"""How each proxy balances two backends: measurements, not assertions.

    python benchmarks/lb_balance.py [--only nginx] [--requests 12]

For every proxy's lb-round-robin and lb-sticky setup (proxies/<proxy>/), and any
extra config given with --config PROXY=FILE[,FILE], it launches the proxy in
front of two origins as a run does and prints:

- the backend each of N cookie-less requests reached (1 or 2, in order): does it
  alternate?
- the Set-Cookie headers of the long-polling handshake's response, and of a
  WebSocket's 101 (read from the raw handshake), without cookies sent;
- the same N requests sent with the cookies the handshake set: do they stick?
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from pathlib import Path

import aiohttp

from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.origin import Origin
from proxytest.probes.context import new_session
from proxytest.runner import prepare_target, target_origins
from proxytest.runtimes import LOOPBACK

ROOT = Path(__file__).resolve().parents[1]
PROXIES = ("nginx", "haproxy", "envoy", "traefik", "caddy")


def configs(proxy: str, setup: str) -> tuple[Path, ...]:
    folder = ROOT / "proxies" / proxy
    found = sorted(p for p in folder.glob(f"{setup}.*") if ".dynamic." not in p.name)
    dynamic = sorted(folder.glob(f"{setup}.dynamic.*"))
    return (*found, *dynamic)


async def raw_upgrade(host: str, port: int) -> list[str]:
    """A WebSocket handshake by hand: the Set-Cookie lines of the 101."""
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/echo HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode(errors="replace")
    writer.close()
    lines = head.split("\r\n")
    return [lines[0]] + [x for x in lines if x.lower().startswith("set-cookie")]


async def measure(label: str, target: TargetSpec, n: int) -> None:
    options = RunOptions.from_matrix()
    async with Origin(LOOPBACK) as run_origin, new_session() as session:
        prepared = await prepare_target(target, options, session)
        if isinstance(prepared, str):
            print(f"{label}: not run ({prepared})")
            return
        harness = prepared.harness
        async with (
            target_origins(run_origin, harness, prepared.runtime) as origins,
            harness.instance(
                origins[0].host,
                origins[0].port,
                origins[0].id,
                more=[(o.host, o.port, o.id) for o in origins[1:]],
            ) as inst,
        ):
            number = {o.id: str(i) for i, o in enumerate(origins, 1)}
            base = inst.base_url
            plain = []
            for _ in range(n):
                async with session.get(f"{base}/__proxytest/ready") as r:
                    plain.append(number.get(await r.text(), "?"))
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as client:
                async with client.get(f"{base}/lb/handshake") as r:
                    cookies = r.headers.getall("Set-Cookie", [])
                    first = number.get(r.headers.get("X-Proxytest-Origin", ""), "?")
                kept = []
                for _ in range(n):
                    async with client.get(f"{base}/__proxytest/ready") as r:
                        kept.append(number.get(await r.text(), "?"))
            ws = await raw_upgrade(inst.host, inst.port)
            print(f"{label} ({prepared.version}):")
            print(f"  {n} requests without cookies reached backends: {' '.join(plain)}")
            print(f"  handshake on backend {first}, Set-Cookie: {cookies or 'none'}")
            print(f"  then {n} requests with its cookies reached:    {' '.join(kept)}")
            print(f"  WebSocket handshake without cookies: {ws}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--config", action="append", default=[], help="PROXY=FILE[,FILE]")
    args = parser.parse_args()
    jobs: list[tuple[str, TargetSpec]] = []
    for proxy in args.only or PROXIES:
        for setup in ("lb-round-robin", "lb-sticky"):
            jobs.append((f"{proxy}/{setup}", TargetSpec(proxy, setup, configs(proxy, setup))))
    for extra in args.config:
        proxy, _, files = extra.partition("=")
        paths = tuple(Path(f) for f in files.split(","))
        jobs.append((f"{proxy}/{paths[0].name}", TargetSpec(proxy, paths[0].stem, paths)))
    for label, target in jobs:
        try:
            await measure(label, target, args.requests)
        except Exception as exc:  # a measurement script: say it and go on
            print(f"{label}: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
