"""``--shard K/N``: every target in exactly one shard, the same way everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import UsageError
from proxytest.matrix import load_matrix
from proxytest.shards import Shard, parse_shard
from proxytest.starter import starter_matrix

from .conftest import ROOT, Cli


def _default_ids() -> list[str]:
    return [t.id for t in load_matrix(ROOT / "matrix.yaml", tuple(ADAPTERS)).targets]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 40])
def test_the_shards_of_the_default_matrix_cover_every_target_exactly_once(count: int) -> None:
    ids = _default_ids()
    parts = [Shard(k, count).pick(ids) for k in range(1, count + 1)]
    flat = [i for part in parts for i in part]
    assert sorted(flat) == sorted(ids)
    assert len(flat) == len(set(flat))
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1  # balanced
    for part in parts:  # each shard keeps the matrix's order
        assert part == [i for i in ids if i in part]


def test_the_assignment_is_round_robin_by_position_not_by_hash() -> None:
    # Written out, so a change of rule (or a hash that differs between
    # machines or Python versions) shows here.
    ids = ["a/1", "b/1", "c/1", "d/1", "e/1", "f/1", "g/1"]
    assert Shard(1, 3).pick(ids) == ["a/1", "d/1", "g/1"]
    assert Shard(2, 3).pick(ids) == ["b/1", "e/1"]
    assert Shard(3, 3).pick(ids) == ["c/1", "f/1"]
    assert Shard(2, 9).pick(ids[:1]) == []


@pytest.mark.parametrize(("text", "shard"), [("1/1", Shard(1, 1)), (" 3 / 4 ", Shard(3, 4))])
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3", "expected K/N"),
        ("a/b", "expected K/N"),
        ("-1/4", "expected K/N"),
        ("1.5/4", "expected K/N"),
        ("0/4", "K must be 1 to 4"),
        ("5/4", "K must be 1 to 4"),
        ("1/0", "N must be 1 to"),
        ("1/100000", "N must be 1 to"),
    ],
)
def test_bad_shards_are_usage_errors_with_the_fix(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_shard(text)
    assert problem in str(caught.value)
    assert "K/N" in (caught.value.fix or "")


def test_bad_shard_syntax_exits_2_before_reading_the_matrix(cli: Cli, tmp_path: Path) -> None:
    done = cli("run", str(tmp_path / "missing.yaml"), "--shard", "5/4")
    assert done.returncode == 2
    assert "--shard '5/4'" in done.stderr and "fix:" in done.stderr
    assert "missing.yaml" not in done.stderr


def test_an_empty_shard_exits_0_and_writes_an_empty_report(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    done = cli("run", "--only", "nginx", "--shard", "9/9", "--json", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "shard 9/9 has no targets" in done.stderr
    data = json.loads(out.read_text())
    assert data["targets"] == [] and data["shard"] == "9/9"
    nginx = [i for i in _default_ids() if i.startswith("nginx/")]
    assert data["matrix_targets"] == nginx
    # no ./matrix.yaml in tmp_path: the packaged one ran, and the run said so
    assert "running the default matrix shipped with proxytest" in done.stderr
    assert starter_matrix().is_file()


def test_an_empty_shard_still_checks_the_options(cli: Cli, tmp_path: Path) -> None:
    done = cli("run", "--only", "nginx", "--shard", "9/9", "--checks", "nosuch.*", cwd=tmp_path)
    assert done.returncode == 2
    assert "nosuch" in done.stderr
