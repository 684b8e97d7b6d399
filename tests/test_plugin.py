"""The pytest plugin, end to end: pytester runs pytest on a matrix with real proxies.

Each run is a subprocess (``runpytest_subprocess``) so the plugin is loaded the way
users get it, through the ``pytest11`` entry point.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxytest.checks import CHECKS
from tests.conftest import ROOT, processes_under, signal_once_running

pytestmark = pytest.mark.integration

# Five targets chosen so that one run shows every outcome:
#   nginx/default   ws.upgrade fail, expected       -> xfailed;  sse.stream -> passed
#   nginx/realtime  ws.upgrade pass, "expected" fail -> xpassed; sse.stream -> passed
#   haproxy/default sse.stream degraded, not expected -> failed; ws.upgrade -> passed
#   nginx/broken    a config nginx rejects            -> 2 errors
#   caddy/no-engine the docker runtime, no engine,
#                   marked optional                   -> 2 skipped
MATRIX = """\
checks: [ws.upgrade, sse.stream]
targets:
  - proxy: nginx
    setup: default
    configs: ["{root}/proxies/nginx/default.conf"]
    expect: {{ws.upgrade: fail}}
  - proxy: nginx
    setup: realtime
    configs: ["{root}/proxies/nginx/realtime.conf"]
    expect: {{ws.upgrade: fail}}
  - proxy: haproxy
    setup: default
    configs: ["{root}/proxies/haproxy/default.cfg"]
  - proxy: nginx
    setup: broken
    configs: [broken.conf]
  - proxy: caddy
    setup: no-engine
    runtime: docker
    optional: true
    configs: ["{root}/proxies/caddy/default.Caddyfile"]
"""

BROKEN_NGINX = """\
pid {{ run_dir }}/nginx.pid;
events {}
http {
  server {
    listen {{ listen_host }}:{{ listen_port }};
    no_such_directive on;
    location / { proxy_pass http://{{ upstream_host }}:{{ upstream_port }}; }
  }
}
"""

OUTCOMES = dict(passed=3, xpassed=1, xfailed=1, failed=1, errors=2, skipped=2)
LAUNCHED = "haproxy/default ×1, nginx/broken ×1, nginx/default ×1, nginx/realtime ×1"


@pytest.fixture
def matrix(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    # No Docker engine answers here, whatever the machine runs: caddy/no-engine skips.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-engine.sock")
    pytester.makefile(".conf", broken=BROKEN_NGINX)
    path = pytester.path / "matrix.yaml"
    path.write_text(MATRIX.format(root=ROOT))
    return path


def _lit(text: str) -> str:
    """``text`` as a literal fnmatch pattern ([nginx-default] is not a character class)."""
    return re.sub(r"([\[\]])", r"[\1]", text)


def _launches(stdout: str) -> str:
    found = re.search(r"proxytest: matrix run [\d.]+ s; launches: (.*)", stdout)
    assert found, stdout
    return found.group(1).strip()


def test_collects_one_readable_test_per_check_and_target(
    pytester: pytest.Pytester, matrix: Path
) -> None:
    result = pytester.runpytest_subprocess(
        "--proxytest-matrix", str(matrix), "--collect-only", "-q"
    )
    result.assert_outcomes()
    ids = [line for line in result.outlines if line.startswith("matrix.yaml::")]
    assert ids == [
        f"matrix.yaml::test_{check}[{target}]"
        for check in ("ws_upgrade", "sse_stream")
        for target in (
            "nginx-default",
            "nginx-realtime",
            "haproxy-default",
            "nginx-broken",
            "caddy-no-engine",
        )
    ]
    assert "matrix run" not in result.stdout.str()  # collecting launches nothing


def test_verdicts_become_outcomes_and_each_target_launches_once(
    pytester: pytest.Pytester, matrix: Path
) -> None:
    report_dir = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        "--proxytest-matrix", str(matrix), "--proxytest-report-dir", str(report_dir), "-rA"
    )
    result.assert_outcomes(**OUTCOMES)
    result.stdout.fnmatch_lines([f"proxytest: matrix {matrix} (5 target(s), runtime per matrix*"])
    assert _launches(result.stdout.str()) == LAUNCHED
    # A failure carries the summary, the hint and the metrics.
    result.stdout.fnmatch_lines(
        [
            "*haproxy/default sse.stream: degraded — *",
            "hint: *http-no-delay*",
            "metrics: *p95_delay_ms=*",
        ]
    )
    result.stdout.fnmatch_lines(
        [_lit("XFAIL matrix.yaml::test_ws_upgrade[nginx-default] - fail as the matrix") + "*"]
    )
    result.stdout.fnmatch_lines(
        [_lit("XPASS matrix.yaml::test_ws_upgrade[nginx-realtime] - the matrix expects") + "*"]
    )
    result.stdout.fnmatch_lines(
        ["nginx/broken ws.upgrade: error — *broken.conf:6: nginx rejected*"]
    )
    result.stdout.fnmatch_lines(["SKIPPED [[]2[]] matrix.yaml: no Docker engine answers*"])
    written = sorted(p.relative_to(report_dir).as_posix() for p in report_dir.rglob("*.*"))
    assert {"results.json", "junit.xml", "summary.md", "report.html"} <= set(written)
    assert "badges/overall.svg" in written and "badges/nginx-default.json" in written
    saved = json.loads((report_dir / "results.json").read_text())
    assert [t["id"] for t in saved["targets"]] == [
        "nginx/default",
        "nginx/realtime",
        "haproxy/default",
        "nginx/broken",
        "caddy/no-engine",
    ]


def test_an_expected_error_is_as_expected_for_pytest_and_the_cli(
    pytester: pytest.Pytester,
) -> None:
    """One rule for "as expected": `expect: error` xfails here and exits 0 on the CLI."""
    pytester.makefile(".conf", broken=BROKEN_NGINX)
    matrix = pytester.path / "matrix.yaml"
    matrix.write_text(
        "checks: [ws.upgrade, sse.stream]\n"
        "targets:\n"
        "  - proxy: nginx\n"
        "    setup: broken\n"
        "    configs: [broken.conf]\n"
        "    expect: {ws.upgrade: error}\n"
    )
    result = pytester.runpytest_subprocess("--proxytest-matrix", str(matrix), "-rA")
    result.assert_outcomes(xfailed=1, errors=1)
    result.stdout.fnmatch_lines(
        [_lit("XFAIL matrix.yaml::test_ws_upgrade[nginx-broken] - error as the matrix") + "*"]
    )
    cli = subprocess.run(
        [sys.executable, "-m", "proxytest", "run", str(matrix), "--json", "run.json"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 1, cli.stdout + cli.stderr  # sse.stream's error is not expected
    verdicts = {
        r["check"]: (r["verdict"], r["expected"])
        for r in json.loads((pytester.path / "run.json").read_text())["targets"][0]["results"]
    }
    assert verdicts == {"ws.upgrade": ("error", "error"), "sse.stream": ("error", None)}
    matrix.write_text(matrix.read_text().replace("{ws.upgrade: error}", "{'*': error}"))
    assert pytester.runpytest_subprocess("--proxytest-matrix", str(matrix)).ret == 0
    cli = subprocess.run(
        [sys.executable, "-m", "proxytest", "run", str(matrix)],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_a_target_that_could_not_run_fails_unless_optional(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Green means measured: no engine for a docker target is a failure, as on the CLI."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-engine.sock")
    matrix = pytester.path / "matrix.yaml"
    matrix.write_text(
        "checks: [ws.upgrade]\n"
        "targets:\n"
        "  - proxy: caddy\n"
        "    runtime: docker\n"
        f"    configs: [{ROOT / 'proxies/caddy/default.Caddyfile'}]\n"
    )
    result = pytester.runpytest_subprocess("--proxytest-matrix", str(matrix))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*could not run*no Docker engine answers*", "*optional: true*"])
    allowed = pytester.runpytest_subprocess(
        "--proxytest-matrix", str(matrix), "--proxytest-skip-missing"
    )
    allowed.assert_outcomes(skipped=1)
    cli = subprocess.run(
        [sys.executable, "-m", "proxytest", "run", str(matrix)],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "NOT RUN" in cli.stdout


def test_under_xdist_every_target_still_launches_once(
    pytester: pytest.Pytester, matrix: Path
) -> None:
    pytest.importorskip("xdist")
    result = pytester.runpytest_subprocess("--proxytest-matrix", str(matrix), "-n", "2")
    result.assert_outcomes(**OUTCOMES)
    assert _launches(result.stdout.str()) == LAUNCHED


def test_ini_keys_and_selection(pytester: pytest.Pytester, matrix: Path) -> None:
    pytester.makeini(
        """
        [pytest]
        proxytest_matrix = matrix.yaml
        proxytest_only = nginx/realtime
        proxytest_checks = sse.stream ws.upgrade
        """
    )
    pytester.makepyfile(test_own="def test_own():\n    pass\n")
    # Bare pytest: the default paths, so the matrix's tests run too.
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2, xpassed=1)  # the matrix expects ws.upgrade to fail
    result.stdout.fnmatch_lines(
        ["*" + _lit("matrix.yaml::test_sse_stream[nginx-realtime]") + " PASSED*"]
    )
    assert _launches(result.stdout.str()) == "nginx/realtime ×1"
    # Naming a file: only that file, although the ini names a matrix.
    result = pytester.runpytest_subprocess("test_own.py")
    result.assert_outcomes(passed=1)
    assert "matrix run" not in result.stdout.str()


def test_user_fixtures_reach_each_target_once(pytester: pytest.Pytester) -> None:
    matrix = pytester.path / "matrix.yaml"
    matrix.write_text(
        "targets:\n"
        f"  - {{proxy: nginx, setup: realtime, configs: ['{ROOT}/proxies/nginx/realtime.conf']}}\n"
        f"  - {{proxy: haproxy, setup: realtime,\n"
        f"      configs: ['{ROOT}/proxies/haproxy/realtime.cfg']}}\n"
    )
    pytester.makepyfile(
        test_mine=textwrap.dedent(
            """
            import json
            import pytest

            @pytest.mark.asyncio
            async def test_sse_events_arrive_in_order(proxytest_target, proxytest_sse):
                events = await proxytest_sse.collect(count=3, interval_ms=50)
                assert [e.json()["seq"] for e in events] == [1, 2, 3]

            @pytest.mark.asyncio
            async def test_websocket_echo(proxytest_ws):
                async with proxytest_ws.connect("/ws/echo") as ws:
                    await ws.send_str("hello")
                    assert (await ws.receive(timeout=5)).data == "hello"

            def test_origin_is_up(proxytest_origin):
                assert proxytest_origin.base_url.startswith("http://127.0.0.1:")

            @pytest.mark.proxytest_targets("haproxy/*")
            def test_only_haproxy(proxytest_target):
                assert proxytest_target.proxy == "haproxy"
                assert proxytest_target.base_url.startswith("http://127.0.0.1:")
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "--proxytest-matrix", str(matrix), "-m", "not proxytest", "-v"
    )
    result.assert_outcomes(passed=6, deselected=2 * len(CHECKS))  # the check items
    result.stdout.fnmatch_lines(
        ["*" + _lit("test_sse_events_arrive_in_order[nginx-realtime]") + " PASSED*"]
    )
    result.stdout.fnmatch_lines(
        ["proxytest: targets started for fixtures: haproxy/realtime ×1, nginx/realtime ×1"]
    )


def test_without_a_matrix_the_plugin_stays_out_of_the_way(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.makepyfile(test_wants_target="def test_needs(proxytest_target):\n    pass\n")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    assert "proxytest: matrix" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*no proxytest matrix: pass --proxytest-matrix*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxytest-only", "nosuch"], "*--proxytest-only 'nosuch' matches no target*"),
        (["--proxytest-checks", "nope.*"], "*--proxytest-checks 'nope.*' matches no check*"),
        (["--proxytest-max-hold", "soon"], "*--proxytest-max-hold must be a number*'soon'*"),
        (["--proxytest-max-hold", "nan"], "*--proxytest-max-hold must be *not a finite number*"),
        (["--proxytest-runtime", "podman"], "*argument --proxytest-runtime: invalid choice*"),
    ],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester, matrix: Path, args: list[str], message: str
) -> None:
    result = pytester.runpytest_subprocess("--proxytest-matrix", str(matrix), *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_matrix_names_its_file_and_line(pytester: pytest.Pytester) -> None:
    bad = pytester.path / "matrix.yaml"
    bad.write_text("targets:\n  - proxy: nginx\n    setup: default\n    colour: blue\n")
    result = pytester.runpytest_subprocess("--proxytest-matrix", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{bad}:4*colour*"])
    assert not list(pytester.path.glob("proxytest-pytest-*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_every_proxy(tmp_path: Path, sig: int) -> None:
    """Ctrl-C or SIGTERM during the matrix run: no proxy, run dir or shared dir stays."""
    private_tmp = tmp_path / "tmpdir"
    private_tmp.mkdir()
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "checks: [sse.idle, ws.idle]\nmax_hold: 60\ntargets:\n"
        + "".join(
            f"  - {{proxy: {p}, setup: realtime, configs: ['{ROOT}/proxies/{p}/realtime.{e}']}}\n"
            for p, e in (("nginx", "conf"), ("haproxy", "cfg"))
        )
    )
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--proxytest-matrix",
         str(matrix), "--rootdir", str(tmp_path), str(matrix)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        # settle_s: the long checks are holding connections by then
        out, _ = signal_once_running(
            process, lambda: len(processes_under(private_tmp)), sig, settle_s=1.0, end_s=45
        )
    assert process.returncode == pytest.ExitCode.INTERRUPTED, out
    assert processes_under(private_tmp) == []
    assert sorted(p.name for p in private_tmp.iterdir()) == [], out


def test_the_header_shows_the_neutralised_lines_of_a_deployed_config(
    pytester: pytest.Pytester,
) -> None:
    deployed = ROOT / "tests" / "configs" / "deployed" / "nginx" / "nginx.conf"
    path = pytester.path / "matrix.yaml"
    path.write_text(
        f'targets:\n  - proxy: nginx\n    setup: deployed\n    configs: ["{deployed}"]\n'
    )
    result = pytester.runpytest_subprocess("--proxytest-matrix", str(path), "--collect-only")
    result.stdout.fnmatch_lines(
        [f"proxytest: notice: {deployed}:6: daemon off; removed (proxytest runs nginx in the*"]
    )
    assert result.stdout.str().count("proxytest: notice:") == 8
