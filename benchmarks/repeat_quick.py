"""Do the default matrix's quick checks give the same verdicts run after run?

    python benchmarks/repeat_quick.py [--runs 10] [--busy] [--json-dir DIR]

Runs the quick-phase checks of every target of matrix.yaml ``--runs`` times
(as `proxytest run` would, one run after the other) and prints, per run, its
wall time and verdict counts, then every target × check whose verdict was not
the same in all runs. ``--busy`` keeps one core busy meanwhile with a process
that only spins (started here, ended by its pid), as a noisy CI neighbour
would. Exit code 0 when every verdict was stable, 1 when one flipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from proxytest.adapters import ADAPTERS
from proxytest.checks import CHECKS, Phase
from proxytest.matrix import load_matrix
from proxytest.options import RunOptions
from proxytest.runner import run_targets

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--matrix", type=Path, default=ROOT / "matrix.yaml")
    parser.add_argument("--json-dir", type=Path, help="write each run's JSON report here")
    args = parser.parse_args()
    matrix = load_matrix(args.matrix, tuple(ADAPTERS))
    quick = [c.id for c in CHECKS.values() if c.phase == Phase.QUICK]
    options = RunOptions.from_matrix(matrix, checks=quick)
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if args.busy else None
    seen: dict[tuple[str, str], Counter[str]] = {}
    print(
        f"{len(matrix.targets)} targets x {len(quick)} quick checks, {args.runs} runs"
        f"{', one core kept busy' if args.busy else ''}"
    )
    try:
        for n in range(1, args.runs + 1):
            started = time.monotonic()
            run = asyncio.run(run_targets(matrix.targets, options))
            wall = time.monotonic() - started
            tally: Counter[str] = Counter()
            for target in run.targets:
                for result in target.results:
                    seen.setdefault((target.id, result.check), Counter())[result.verdict.value] += 1
                    tally[result.verdict.value] += 1
            counts = ", ".join(f"{v} {k}" for k, v in sorted(tally.items()))
            print(f"run {n:>2}: {wall:5.1f} s  {counts}  as expected: {run.as_expected}")
            if args.json_dir:
                args.json_dir.mkdir(parents=True, exist_ok=True)
                path = args.json_dir / f"run-{n}.json"
                path.write_text(json.dumps(run.to_json(), indent=1))
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    flipped = {key: counts for key, counts in seen.items() if len(counts) > 1}
    for (target, check), counts in sorted(flipped.items()):
        print(f"  flipped: {target:<18} {check:<20} {dict(counts)}")
    print(f"{len(flipped)} of {len(seen)} target x check verdicts flipped across {args.runs} runs")
    return 1 if flipped else 0


if __name__ == "__main__":
    sys.exit(main())
