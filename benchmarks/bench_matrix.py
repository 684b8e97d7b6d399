"""Benchmark: wall time of the default matrix against the serial sum of its targets.

    python benchmarks/bench_matrix.py [--matrix matrix.yaml] [--repeat 3] [--concurrency N]

Prints, per run, the wall time, the sum of per-target times (what a serial run
would take) and their ratio (the speed-up from running targets concurrently),
plus the tool's peak RSS. Numbers, not assertions: timing targets belong here,
not in the test suite.
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
from proxytest.checks import select
from proxytest.matrix import load_matrix
from proxytest.runner import RunOptions, run_targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--matrix", type=Path, default=Path(__file__).parents[1] / "matrix.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int)
    args = parser.parse_args()
    matrix = load_matrix(args.matrix, tuple(ADAPTERS))
    options = RunOptions(
        checks=select(matrix.checks), concurrency=args.concurrency or matrix.concurrency
    )
    print(
        f"{len(matrix.targets)} targets × {len(options.checks)} checks, "
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
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"median wall {statistics.median(walls):.2f} s, median speed-up "
        f"{statistics.median(ratios):.2f}x, peak RSS {rss_mb:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
