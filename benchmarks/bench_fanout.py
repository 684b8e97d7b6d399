"""The fan-out curve: N subscribers vs delivery latency, per realtime setup.

    python benchmarks/bench_fanout.py [--max-n 5000] [--only nginx] [--direct]

For each `realtime` setup of the matrix, load.fanout steps N up (10, 50, 100,
250, 500, 1000, 1500, 2000, 3000, 4000, then the max) to the machine's limit:
the max N, or what the open-files limit allows (each N costs this process 4
descriptors, the proxy 4), or the knee of both protocols. It prints, per N, the
p50 and p99 delivery latency of SSE and WebSocket side by side through the
proxy, the messages lost, the direct path's p99 (the baseline, measured at the
same N just before), the origin's longest loop writing one message to every
subscriber (``origin``, ms) and the tool's worst event-loop lag (``lag``, ms).
Latencies are the kernel's receive times of the subscribers' sockets minus the
origin's send times (cleartext), so the tool's own reading is not in them.
``--direct`` first measures the tool alone (both paths straight to the origin
process): how far one client process keeps up. 20 messages a step here (the
check's default is 5, to keep the default matrix short).

Numbers, not assertions: the machine is shared, so run it when it is quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxytest.adapters import ADAPTERS
from proxytest.checks import EvalContext
from proxytest.checks.load import evaluate_fanout
from proxytest.lag import LagMonitor
from proxytest.matrix import load_matrix
from proxytest.options import RunOptions
from proxytest.origin.process import OriginProcess
from proxytest.probes import ProbeContext
from proxytest.probes.context import new_session
from proxytest.probes.fanout import _fanout
from proxytest.probes.load import raise_fd_limit
from proxytest.runner import run_targets
from proxytest.settings import Settings
from proxytest.timing import Thresholds

ROOT = Path(__file__).resolve().parents[1]
# One attempt per setup, and patience for minutes of stepping.
PATIENT = Thresholds(
    timing_retries=0, check_timeout_s=600.0, fanout_deadline_s=1500.0, fanout_messages=20
)


def ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(curve: list[dict[str, Any]]) -> None:
    print(
        f"{'N':>6} | {'SSE p50':>8} {'SSE p99':>8} {'lost':>5} | {'WS p50':>8} {'WS p99':>8} "
        f"{'lost':>5} | {'direct SSE p99':>14} {'direct WS p99':>13} | {'origin':>6} {'lag':>6}"
    )
    for p in curve:
        print(
            f"{p['n']:>6} | {ms(p['sse_p50_ms']):>8} {ms(p['sse_p99_ms']):>8} "
            f"{p['sse_lost']!s:>5} | {ms(p['ws_p50_ms']):>8} {ms(p['ws_p99_ms']):>8} "
            f"{'-' if p['ws_lost'] is None else p['ws_lost']!s:>5} | "
            f"{ms(p['direct_sse_p99_ms']):>14} {ms(p['direct_ws_p99_ms']):>13} | "
            f"{ms(p['origin_write_ms']):>6} {ms(p['loop_lag_ms']):>6}"
        )


@dataclass
class _Direct:
    """The origin process as the 'target': both paths straight to it (no proxy)."""

    host: str
    port: int
    id: str = "origin-process"


async def direct(max_n: int) -> None:
    async with (
        OriginProcess() as origin,
        LagMonitor() as lag,
        new_session() as session,
    ):
        assert origin.port is not None
        view: Any = _Direct("127.0.0.1", origin.port, origin.id)
        ctx = ProbeContext(
            "127.0.0.1", origin.port, view, session, PATIENT, lag,
            settings=Settings(fanout_max_n=max_n),
        )  # fmt: skip
        started = time.monotonic()
        timeline = await _fanout(ctx, ctx, "bench", raise_fd_limit(), origin_process=True)
        outcome = evaluate_fanout(timeline, EvalContext(PATIENT))
    print(
        f"\n== the tool alone: both paths direct to the origin process "
        f"({time.monotonic() - started:.0f} s) =="
    )
    table(outcome.metrics["curve"])
    print(f"-> {outcome.verdict.value}: {outcome.summary}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=Path, default=ROOT / "matrix.yaml")
    parser.add_argument("--max-n", type=int, default=5000)
    parser.add_argument("--only", action="append", help="proxy name (repeatable)")
    parser.add_argument("--direct", action="store_true", help="measure the tool alone first")
    args = parser.parse_args()
    limit = raise_fd_limit()
    matrix = load_matrix(args.matrix, tuple(ADAPTERS))
    targets = [
        t for t in matrix.targets
        if t.setup == "realtime" and (not args.only or t.proxy in args.only)
    ]  # fmt: skip
    print(
        f"fan-out: {len(targets)} realtime setups, max N {args.max_n} per protocol, "
        f"fd limit {limit} (this process: 4 per N), one message every "
        f"{PATIENT.fanout_interval_ms:g} ms, {PATIENT.fanout_messages} per step and path"
    )
    if args.direct:
        asyncio.run(direct(args.max_n))
    options = RunOptions.from_matrix(
        matrix, checks=["load.fanout"], concurrency=1, fanout_max_n=args.max_n,
        thresholds=PATIENT,
    )  # fmt: skip
    started = time.monotonic()
    run = asyncio.run(run_targets(targets, options))
    for target in run.targets:
        print(f"\n== {target.id} {target.proxy_version or ''} ({target.duration_s:.0f} s) ==")
        if not target.results or target.status.value != "ok":
            print(f"not run: {target.reason}")
            continue
        result = target.results[0]
        metrics = result.metrics
        if "curve" in metrics:
            table(metrics["curve"])
            print(
                f"knee: SSE {metrics['sse_knee_n'] or 'none'}, WebSocket "
                f"{metrics['ws_knee_n'] or 'none'} (up to N={metrics['max_n']})"
            )
        print(f"-> {result.verdict.value}: {result.summary}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {time.monotonic() - started:.0f} s, peak RSS of this process {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
