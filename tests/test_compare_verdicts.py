"""benchmarks/compare_verdicts.py: the before/after check of a refactor finds a flipped verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from proxytest.results import Verdict

from .conftest import ROOT
from .report_fixtures import sample_run

SCRIPT = ROOT / "benchmarks" / "compare_verdicts.py"


def _compare(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, paths)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_same_verdicts_agree_and_a_flip_is_named(tmp_path: Path) -> None:
    run = sample_run()
    before, same, after = tmp_path / "before.json", tmp_path / "same.json", tmp_path / "after.json"
    before.write_text(json.dumps(run.to_json()))
    same.write_text(json.dumps(run.to_json()))
    target = run.targets[0]
    flipped = replace(target.results[1], verdict=Verdict.DEGRADED)
    changed = replace(target, results=(target.results[0], flipped, *target.results[2:]))
    after.write_text(json.dumps(replace(run, targets=(changed, *run.targets[1:])).to_json()))

    agree = _compare(before, same)
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert "0 of " in agree.stdout

    differ = _compare(before, same, after)
    assert differ.returncode == 1
    line = f"{target.id}"
    assert any(
        ln.startswith(line) and flipped.check in ln and "degraded" in ln
        for ln in differ.stdout.splitlines()
    ), differ.stdout
    assert "1 of " in differ.stdout


def test_an_unreadable_report_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert _compare(bad, bad).returncode == 2
