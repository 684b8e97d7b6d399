"""``proxytest report --merge``: shards' reports become one run's report.

The merge of real shard runs equals the unsharded run's verdicts:
tests/integration/test_shards.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from proxytest.errors import ReportError
from proxytest.reports import run_from_json
from proxytest.reports.merge import merge_reports
from proxytest.results import RunResult
from proxytest.shards import Shard

from .conftest import Cli
from .report_fixtures import sample_run


def _shards(run: RunResult, count: int) -> list[dict[str, Any]]:
    """``run`` cut as ``run --shard K/count`` would, each with its own clock."""
    ids = tuple(t.id for t in run.targets)
    parts = []
    for k in range(1, count + 1):
        part = replace(
            run,
            targets=tuple(Shard(k, count).pick(run.targets)),
            started_at=f"2026-11-23T12:00:0{count - k}+00:00",
            duration_s=10.0 * k,
            shard=f"{k}/{count}",
            matrix_targets=ids,
        )
        parts.append(part.to_json())
    return parts


def _named(datas: list[dict[str, Any]]) -> list[tuple[Path, dict[str, Any]]]:
    return [(Path(f"shard-{n}.json"), d) for n, d in enumerate(datas, 1)]


def test_merged_shards_are_the_whole_run_in_the_matrix_s_order() -> None:
    run = sample_run()
    shards = _shards(run, 3)
    merged, notices = merge_reports(_named(shards[::-1]))  # any file order
    assert notices == []
    assert [t["id"] for t in merged["targets"]] == [t.id for t in run.targets]
    assert merged["targets"] == run.to_json()["targets"]
    assert merged["started_at"] == "2026-11-23T12:00:00+00:00"  # the earliest
    assert merged["duration_s"] == 30.0  # the longest shard's: they ran in parallel
    assert "shard" not in merged and "matrix_targets" not in merged
    assert run_from_json(merged).exit_code == run.exit_code


def test_a_target_in_two_reports_names_both_files() -> None:
    shards = _shards(sample_run(), 2)
    with pytest.raises(ReportError) as caught:
        merge_reports([(Path("a.json"), shards[0]), (Path("b.json"), shards[0])])
    assert caught.value.file == Path("b.json")
    assert "also in a.json" in str(caught.value)


def test_a_missing_shard_is_an_error_not_a_smaller_report() -> None:
    shards = _shards(sample_run(), 3)
    with pytest.raises(ReportError) as caught:
        merge_reports(_named([shards[0], shards[2]]))
    assert "shards not given: 2/3" in str(caught.value)
    assert "haproxy/realtime" in str(caught.value)


def test_an_empty_shard_merges() -> None:
    run = replace(sample_run(), targets=sample_run().targets[:1])
    merged, _ = merge_reports(_named(_shards(run, 2)))
    assert [t["id"] for t in merged["targets"]] == ["nginx/default"]


def test_different_versions_merge_with_a_notice() -> None:
    one, two = _shards(sample_run(), 2)
    two["tool"]["version"] = "9.9.9"
    merged, notices = merge_reports(_named([one, two]))
    assert merged["tool"]["version"] == "0.1.0"
    assert len(notices) == 1 and "9.9.9 (shard-2.json)" in notices[0]


def test_unsharded_reports_merge_in_file_order() -> None:
    run = sample_run()
    first = replace(run, targets=run.targets[2:]).to_json()
    second = replace(run, targets=run.targets[:2], interrupted=True).to_json()
    merged, notices = merge_reports(_named([first, second]))
    assert notices == []
    assert [t["id"] for t in merged["targets"]] == [t.id for t in run.targets[2:] + run.targets[:2]]
    assert merged["interrupted"] is True
    assert run_from_json(merged).exit_code == 1


def test_report_merge_writes_every_report_and_exits_like_the_run(cli: Cli, tmp_path: Path) -> None:
    files = []
    for n, data in enumerate(_shards(sample_run(), 3), 1):
        path = tmp_path / f"shard-{n}" / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps(data))
        files.append(path)
    out = tmp_path / "merged"
    done = cli("report", "--merge", *map(str, files), str(files[0]), "--report-dir", str(out))
    assert done.returncode == sample_run().exit_code == 1, done.stderr
    assert "named twice, merged once" in done.stderr
    for name in ("results.json", "junit.xml", "summary.md", "report.html", "badges/overall.svg"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert [t["id"] for t in saved["targets"]] == [t.id for t in sample_run().targets]
    # the positional form of the design: RESULTS.json --merge MORE.json …
    again = cli("report", str(files[0]), "--merge", str(files[1]), str(files[2]))
    assert again.returncode == 1 and "nginx/default" in again.stdout


def test_report_merge_with_bad_input_exits_2_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    one, _, three = _shards(sample_run(), 3)
    (tmp_path / "1.json").write_text(json.dumps(one))
    (tmp_path / "3.json").write_text(json.dumps(three))
    out = tmp_path / "out"
    done = cli("report", str(tmp_path / "1.json"), "--merge", str(tmp_path / "3.json"),
               "--report-dir", str(out))  # fmt: skip
    assert done.returncode == 2
    assert "shards not given: 2/3" in done.stderr and "fix:" in done.stderr
    assert not out.exists()
    nothing = cli("report")
    assert nothing.returncode == 2 and "--merge" in nothing.stderr
