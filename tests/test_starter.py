"""The default matrix and setups that ship with proxytest, and ``proxytest init``.

The wheel itself is built and run in tests/integration/test_wheel.py.
"""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import UsageError
from proxytest.matrix import load_matrix
from proxytest.starter import copy_starter, starter_matrix, starter_proxies

from .conftest import ROOT, Cli


def test_from_a_clone_the_starter_is_the_repository_s_own_folders() -> None:
    # The editable install (scripts/dev.sh) reads the source, not a copy.
    assert starter_matrix() == ROOT / "matrix.yaml"
    assert starter_proxies() == ROOT / "proxies"
    matrix = load_matrix(starter_matrix(), tuple(ADAPTERS))
    for target in matrix.targets:
        assert all(starter_proxies() in c.parents for c in target.configs), target.id


def test_init_copies_the_matrix_and_every_setup(tmp_path: Path) -> None:
    written = copy_starter(tmp_path / "new" / "folder")
    folder = tmp_path / "new" / "folder"
    assert written[0] == folder / "matrix.yaml"
    assert filecmp.cmp(folder / "matrix.yaml", ROOT / "matrix.yaml", shallow=False)
    source = sorted(p.relative_to(ROOT) for p in (ROOT / "proxies").rglob("*") if p.is_file())
    copied = sorted(p.relative_to(folder) for p in (folder / "proxies").rglob("*") if p.is_file())
    assert copied == source
    # the copy runs as it is: its targets use its own setups
    matrix = load_matrix(folder / "matrix.yaml", tuple(ADAPTERS))
    assert all(folder / "proxies" in t.configs[0].parents for t in matrix.targets)


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "proxies" / "nginx").mkdir(parents=True)
    mine = tmp_path / "proxies" / "nginx" / "realtime.conf"
    mine.write_text("mine")
    with pytest.raises(UsageError) as caught:
        copy_starter(tmp_path)
    assert caught.value.file == mine
    assert "--force" in (caught.value.fix or "") and "another folder" in (caught.value.fix or "")
    assert mine.read_text() == "mine"
    assert not (tmp_path / "matrix.yaml").exists()
    copy_starter(tmp_path, force=True)
    assert filecmp.cmp(mine, ROOT / "proxies/nginx/realtime.conf", shallow=False)


def test_init_into_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        copy_starter(tmp_path / "f")


def test_a_failure_part_way_removes_what_init_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.copyfile
    calls = 0

    def failing(src: Path, dst: Path) -> object:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(shutil, "copyfile", failing)
    with pytest.raises(UsageError, match="No space left on device"):
        copy_starter(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_init_on_the_command_line(cli: Cli, tmp_path: Path) -> None:
    done = cli("init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote matrix.yaml" in done.stdout and "next:" in done.stdout
    assert "proxytest run" in done.stdout
    again = cli("init", cwd=tmp_path)
    assert again.returncode == 2
    assert "matrix.yaml: already exists" in again.stderr and "fix:" in again.stderr
    assert cli("init", "--force", cwd=tmp_path).returncode == 0
    # ./matrix.yaml is now the one a run uses, without a word about the packaged one
    run = cli("run", "--only", "nosuch", cwd=tmp_path)
    assert run.returncode == 2 and "--only 'nosuch'" in run.stderr
    assert "shipped with proxytest" not in run.stderr


def test_run_without_a_matrix_here_uses_the_packaged_one_and_says_so(
    cli: Cli, tmp_path: Path
) -> None:
    done = cli("run", "--only", "nosuch", cwd=tmp_path)
    assert done.returncode == 2
    first = done.stderr.splitlines()[0]
    assert first == (
        "no ./matrix.yaml: running the default matrix shipped with proxytest "
        "(proxytest init copies it here to edit)"
    )
    assert "nginx/realtime" in done.stderr  # the targets of the packaged matrix


def test_list_outside_a_clone_shows_the_packaged_setups(cli: Cli, tmp_path: Path) -> None:
    done = cli("list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # listed in order, wrapped in the table's cell: default, lb-round-robin, lb-sticky, realtime
    assert "default, lb-round-robin," in done.stdout
    assert "lb-sticky, realtime" in done.stdout
    assert "shipped with proxytest" in done.stdout


def test_init_into_the_starter_s_own_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="own default matrix"):
        copy_starter(ROOT, force=True)
