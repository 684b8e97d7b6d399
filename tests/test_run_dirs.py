"""Run dirs: private (0700) with nginx still working in them, and kept ones shown and spared.

nginx started as root hands its workers to `nobody` unless told `user`; they
write request bodies to temp folders in the run dir. proxytest keeps them as
the invoking user (root), so the run dir can stay private.
"""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS, RenderedConfig
from proxytest.harness import Harness
from proxytest.origin import Origin
from proxytest.probes.context import new_session
from proxytest.runtimes import LOOPBACK, LocalRuntime
from proxytest.runtimes.local import MARKER
from proxytest.timing import Thresholds

from .conftest import ROOT, Cli

NGINX = ADAPTERS["nginx"]


def rendered(tmp_path: Path, text: str, *, as_root: bool) -> RenderedConfig:
    main = tmp_path / "nginx.conf"
    main.write_text(text)
    return RenderedConfig(tmp_path, (main,), (main,), as_root=as_root)


def global_directives(argv: list[str]) -> str | None:
    return argv[argv.index("-g") + 1] if "-g" in argv else None


@pytest.mark.parametrize(
    ("as_root", "directives"),
    [(True, "daemon off; user root;"), (False, "daemon off;")],
)
def test_nginx_keeps_its_workers_as_the_invoking_user(
    tmp_path: Path, as_root: bool, directives: str
) -> None:
    # The file's own `daemon` and `user` lines are neutralised (tests/test_neutralise.py):
    # nginx would refuse them given twice.
    config = rendered(tmp_path, "events {}\n", as_root=as_root)
    assert global_directives(NGINX.argv(Path("nginx"), config)) == directives
    check = NGINX.check_argv(Path("nginx"), config)
    assert check is not None and global_directives(check) == directives


def test_the_run_dir_is_private_and_nginx_still_stores_request_bodies_in_it() -> None:
    """512 KiB is more than nginx keeps in memory (client_body_buffer_size, 16 KiB) and
    less than it accepts (client_max_body_size, 1 MiB): it goes to client_body_temp in
    the run dir. A worker that could not enter the run dir would answer 500."""

    async def post_through_nginx() -> tuple[int, int, int]:
        async with Origin(LOOPBACK) as origin, new_session() as session:
            harness = Harness(
                NGINX, NGINX.find_binary(), (ROOT / "proxies/nginx/default.conf",),
                Thresholds(), session, runtime=LocalRuntime(),
            )  # fmt: skip
            async with harness.instance(origin.host, origin.port, origin.id) as nginx:
                mode = stat.S_IMODE(nginx.config.run_dir.stat().st_mode)
                async with session.post(f"{nginx.base_url}/sse", data=b"x" * 512 * 1024) as answer:
                    status = answer.status
                temp = nginx.config.run_dir / "client_body_temp"
                owner = temp.stat().st_uid if temp.exists() else -1
            return mode, status, owner

    mode, status, owner = asyncio.run(post_through_nginx())
    assert mode == 0o700
    # The origin's own answer (it has no POST route): nginx stored the body and passed it on.
    assert status == 405
    assert owner == Path("/proc/self").stat().st_uid  # the workers' temp folder: ours


def test_kept_run_dirs_are_printed_per_target_and_no_later_run_removes_them(cli: Cli) -> None:
    done = cli("check", "--proxy", "nginx", "--config", "proxies/nginx/realtime.conf",
               "--checks", "ws.upgrade", "--keep-run-dirs")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    shown = re.findall(r"nginx/realtime\.conf\s+(\S+proxytest-nginx-\S+)", done.stdout)
    assert shown, done.stdout
    kept = [Path(p) for p in shown]
    assert sorted(p.name for p in kept) == cli.leftovers()
    for folder in kept:
        assert (folder / "realtime.conf").is_file() and (folder / "proxy.log").exists()
        assert not (folder / MARKER).exists()
    again = cli("check", "--proxy", "nginx", "--config", "proxies/nginx/realtime.conf",
                "--checks", "ws.upgrade")  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Run dirs kept" not in again.stdout
    assert all(folder.is_dir() for folder in kept)
    assert cli.leftovers() == sorted(p.name for p in kept)
