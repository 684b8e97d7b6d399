"""The package type-checks under `mypy --strict` and lints clean (pyproject.toml sets both)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def _run(*argv: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp), "MYPY_CACHE_DIR": str(tmp)}
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    done = _run("mypy", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_ruff_is_clean(tmp_path: Path) -> None:
    folders = ("proxytest", "tests", "benchmarks", "scripts")
    done = _run("ruff", "check", "--no-cache", *folders, tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
