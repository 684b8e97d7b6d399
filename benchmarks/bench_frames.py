"""ws.frames and ws.deflate: how long each takes per target, and what it measured.

    python benchmarks/bench_frames.py [--repeat 3] [--only nginx] [--setups realtime,tls]

The origin itself first (the tool alone: how fast one client process and the
in-process origin move 16 MiB and a burst of 10,000 messages), then each
selected target of the default matrix. Per run it prints each check's
duration, the 16 MiB echo's time, the burst's p50/p99 latency and total time.
Goal: ws.frames well under 1 s per target on loopback, ws.deflate well under
0.5 s. Numbers, not assertions: the machine is shared, so run it when it is quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxytest.adapters import ADAPTERS  # noqa: E402
from proxytest.checks import select  # noqa: E402
from proxytest.lag import LagMonitor  # noqa: E402
from proxytest.matrix import load_matrix  # noqa: E402
from proxytest.options import RunOptions  # noqa: E402
from proxytest.origin import Origin  # noqa: E402
from proxytest.probes import ProbeContext  # noqa: E402
from proxytest.probes.context import new_session  # noqa: E402
from proxytest.results import CheckResult  # noqa: E402
from proxytest.runner import run_checks, run_targets  # noqa: E402
from proxytest.timing import Thresholds  # noqa: E402

IDS = ["ws.deflate", "ws.frames"]


async def direct() -> list[CheckResult]:
    async with Origin() as origin, LagMonitor() as lag, new_session() as session:
        ctx = ProbeContext(origin.host, origin.port, origin, session, Thresholds(), lag)
        return await run_checks(ctx, select(IDS), baseline={})


def row(name: str, results: list[CheckResult]) -> str:
    got = {r.check: r for r in results}
    d, f = got["ws.deflate"], got["ws.frames"]
    m: dict[str, Any] = dict(f.metrics)
    return (
        f"{name:<18} {d.verdict.value:<5} {d.metrics.get('deflate')!s:<10} {d.duration_s:>6.2f}  "
        f"{f.verdict.value:<5} {f.duration_s:>6.2f} {m.get('largest_message_ms')!s:>8} "
        f"{m.get('burst_p50_ms')!s:>8} {m.get('burst_p99_ms')!s:>8} {m.get('burst_ms')!s:>8}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--setups", default="realtime,tls")
    args = parser.parse_args()
    setups = set(args.setups.split(","))
    matrix = load_matrix(ROOT / "matrix.yaml", tuple(ADAPTERS))
    targets = [
        t for t in matrix.targets if t.setup in setups and (not args.only or t.proxy in args.only)
    ]
    options = RunOptions.from_matrix(matrix, checks=IDS)
    print(
        f"{'target':<18} {'defl':<5} {'mode':<10} {'s':>6}  {'frames':<5} {'s':>6} "
        f"{'16MiB_ms':>8} {'p50_ms':>8} {'p99_ms':>8} {'burst_ms':>8}"
    )
    frames_s: list[float] = []
    for _ in range(args.repeat):
        print(row("(origin itself)", asyncio.run(direct())))
        run = asyncio.run(run_targets(targets, options))
        for target in run.targets:
            if target.results and all(r.metrics for r in target.results):
                print(row(target.id, list(target.results)))
                frames_s += [r.duration_s for r in target.results if r.check == "ws.frames"]
            else:
                print(f"{target.id:<18} {target.status.value} {target.reason or ''}")
    if frames_s:
        print(
            f"ws.frames per target: median {statistics.median(frames_s):.2f} s, "
            f"max {max(frames_s):.2f} s over {len(frames_s)} runs"
        )


if __name__ == "__main__":
    main()
