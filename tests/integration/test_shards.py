"""A matrix run as two shards and merged gives the unsharded run's verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import BinaryNotFound

from ..conftest import ROOT, Cli

pytestmark = pytest.mark.integration

CHECKS = ("--checks", "ws.upgrade", "--checks", "sse.stream")


def _verdicts(data: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {
        (t["id"], r["check"]): (r["verdict"], r["expected"])
        for t in data["targets"]
        for r in t["results"]
    }


def test_merged_shards(cli: Cli, tmp_path: Path) -> None:
    """Two shards merged equal the unsharded run (a short name: HAProxy's stats
    socket lives in the run dir, under TMPDIR, and a unix socket path has ~100 bytes)."""
    for proxy in ("nginx", "haproxy"):
        try:
            ADAPTERS[proxy].find_binary()
        except BinaryNotFound as exc:
            pytest.skip(str(exc))
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        f"proxies_dir: {ROOT / 'proxies'}\ntargets:\n"
        "  - {proxy: nginx, setup: realtime}\n  - {proxy: haproxy, setup: realtime}\n"
        "  - {proxy: nginx, setup: default, expect: {ws.*: fail}}\n"
    )
    whole = cli("run", str(matrix), *CHECKS, "--json", str(tmp_path / "all.json"))
    assert whole.returncode == 0, whole.stdout + whole.stderr
    for k in (1, 2):
        shard = cli(
            "run", str(matrix), *CHECKS, "--shard", f"{k}/2", "--json", str(tmp_path / f"{k}.json")
        )
        assert shard.returncode == 0, shard.stdout + shard.stderr
    first = json.loads((tmp_path / "1.json").read_text())
    assert [t["id"] for t in first["targets"]] == ["nginx/realtime", "nginx/default"]
    assert first["shard"] == "1/2"

    out = tmp_path / "merged"
    merged = cli(
        "report", str(tmp_path / "2.json"), "--merge", str(tmp_path / "1.json"),
        "--report-dir", str(out),
    )  # fmt: skip
    assert merged.returncode == whole.returncode, merged.stdout + merged.stderr
    unsharded = json.loads((tmp_path / "all.json").read_text())
    result = json.loads((out / "results.json").read_text())
    assert [t["id"] for t in result["targets"]] == [t["id"] for t in unsharded["targets"]]
    assert _verdicts(result) == _verdicts(unsharded)
    assert len(_verdicts(result)) == 6
    assert cli.leftovers() == []
