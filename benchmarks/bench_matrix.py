"""Benchmarks of whole runs: numbers and ratios, not assertions.

    python benchmarks/bench_matrix.py quick [--repeat 3]   # quick checks of the default matrix
    python benchmarks/bench_matrix.py long [--max-hold 75] # the whole default matrix
    python benchmarks/bench_matrix.py load [--sizes 1000,2000,4000]

quick: wall time vs the serial sum of per-target times (speed-up from running
targets concurrently). Goal: well under a minute for the ten targets.
long: wall time of the full default matrix as a ratio of max-hold (the long
checks of all targets overlap). Goal: <= 1.3.
load: load.concurrency on every realtime setup at growing N; the highest N all
of them hold, and the tool's peak RSS. Goal: 5,000 WebSockets per proxy with
RSS <= 600 MB (the origin runs in a process of its own, so each WebSocket/SSE
pair costs this process 2 file descriptors, its client sockets; the fd hard
limit caps N).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

from proxytest.adapters import ADAPTERS
from proxytest.checks import CHECKS, Phase
from proxytest.matrix import Matrix, load_matrix
from proxytest.options import RunOptions
from proxytest.probes.load import raise_fd_limit
from proxytest.runner import run_targets

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quick(matrix: Matrix, args: argparse.Namespace) -> None:
    quick_ids = [c.id for c in CHECKS.values() if c.phase == Phase.QUICK]
    options = RunOptions.from_matrix(matrix, checks=quick_ids, concurrency=args.concurrency)
    checks = options.checks
    print(
        f"quick: {len(matrix.targets)} targets x {len(checks)} checks, "
        f"concurrency {options.concurrency}"
    )
    print(f"{'run':>3}  {'wall_s':>7}  {'serial_sum_s':>12}  {'ratio':>6}  {'as_expected':>11}")
    walls, ratios = [], []
    for n in range(1, args.repeat + 1):
        started = time.monotonic()
        result = asyncio.run(run_targets(matrix.targets, options))
        wall = time.monotonic() - started
        serial = sum(t.duration_s for t in result.targets)
        walls.append(wall)
        ratios.append(serial / wall)
        print(
            f"{n:>3}  {wall:>7.2f}  {serial:>12.2f}  {serial / wall:>6.2f}  "
            f"{result.as_expected!s:>11}"
        )
    print(
        f"median wall {statistics.median(walls):.2f} s, median speed-up "
        f"{statistics.median(ratios):.2f}x, peak RSS {rss_mb():.0f} MB"
    )


def long(matrix: Matrix, args: argparse.Namespace) -> None:
    options = RunOptions.from_matrix(matrix, max_hold=args.max_hold)
    settings = options.settings
    print(
        f"long: {len(matrix.targets)} targets x {len(options.checks)} checks, "
        f"max-hold {settings.max_hold_s:g} s, load {settings.load_connections}"
    )
    started = time.monotonic()
    result = asyncio.run(run_targets(matrix.targets, options))
    wall = time.monotonic() - started
    serial = sum(t.duration_s for t in result.targets)
    print(
        f"wall {wall:.1f} s = {wall / settings.max_hold_s:.2f} x max-hold (goal <= 1.3); "
        f"serial sum {serial:.0f} s; as expected: {result.as_expected}; "
        f"peak RSS {rss_mb():.0f} MB"
    )


def load(matrix: Matrix, args: argparse.Namespace) -> None:
    limit = raise_fd_limit()
    targets = [t for t in matrix.targets if t.setup == "realtime"]
    sizes = [int(x) for x in args.sizes.split(",")]
    print(
        f"load: {len(targets)} realtime setups, fd limit {limit} "
        f"(at most {(limit - 512) // 2} WebSocket+SSE pairs in this process)"
    )
    print(f"{'N':>6}  {'all_hold':>8}  {'setup_s (max)':>13}  {'rss_mb':>7}  failing")
    best = 0
    for n in sizes:
        options = RunOptions.from_matrix(
            matrix, checks=["load.concurrency"], concurrency=1, load_connections=n
        )
        result = asyncio.run(run_targets(targets, options))
        failing, setups = [], []
        for t in result.targets:
            r = t.results[0]
            setups.append(r.metrics.get("setup_s") or 0.0)
            if r.verdict.value != "pass":
                failing.append(f"{t.id}: {r.summary[:90]}")
        ok = not failing
        best = n if ok else best
        print(
            f"{n:>6}  {ok!s:>8}  {max(setups):>13.1f}  {rss_mb():>7.0f}  "
            f"{'; '.join(failing) or '-'}"
        )
    print(
        f"highest N held by every realtime setup: {best} WebSockets + {best} SSE streams; "
        f"peak RSS {rss_mb():.0f} MB (goal: 5000 WebSockets, <= 600 MB)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("quick", "long", "load"))
    parser.add_argument("--matrix", type=Path, default=ROOT / "matrix.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--max-hold", type=float, help="default: the matrix's")
    parser.add_argument("--sizes", default="1000,2000,3000,4000,4800")
    args = parser.parse_args()
    matrix = load_matrix(args.matrix, tuple(ADAPTERS))
    {"quick": quick, "long": long, "load": load}[args.mode](matrix, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
