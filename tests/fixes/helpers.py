"""What every planner test asserts: the smallest edit, idempotence, and the proxy's own
acceptance of the patched config (its config check, or a start that serves a request)."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import aiohttp
import pytest

from proxytest import adapters
from proxytest.errors import ProxytestError
from proxytest.fixes.base import Finding, Plan, Planner
from proxytest.harness import Harness
from proxytest.origin import Origin
from proxytest.probes.context import new_session
from proxytest.results import Failure
from proxytest.runtimes import LOOPBACK, LocalRuntime
from proxytest.templates import Placeholders, load_config, render_config
from proxytest.timing import Thresholds

_FIX_COMMENT = "# proxytest fix: "  # what the YAML planners write above a new line
# A run of lines a changed file does not keep: path, difflib's op, i1, i2, j1, j2, new lines.
_Edit = tuple[Path, str, int, int, int, int, list[str]]


def findings(*pairs: str, **metrics: float) -> list[Finding]:
    """``"sse.idle:idle"`` … as Findings (``metrics`` given to each)."""
    return [Finding(p.split(":")[0], Failure(p.split(":")[1]), dict(metrics)) for p in pairs]


# --- the smallest edit -------------------------------------------------------------------
def _edits(plan: Plan, originals: Mapping[Path, str]) -> Iterator[_Edit]:
    """Each run of lines a changed file of the plan does not keep."""
    for path, after in plan.files.items():
        before = originals[path].splitlines(keepends=True)
        lines = after.splitlines(keepends=True)
        matcher = difflib.SequenceMatcher(None, before, lines, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op != "equal":
                yield path, op, i1, i2, j1, j2, lines


def assert_smallest(plan: Plan, files: Mapping[Path, str]) -> None:
    """(Text planners) Every original line the plan does not name is kept byte for byte,
    in order: a removed or rewritten line is one a Change names, new lines follow one it
    names."""
    for path, op, i1, i2, _, _, _ in _edits(plan, files):
        named = {c.line for c in plan.changes if c.file == path}
        assert op != "delete", f"{path}: lines {i1 + 1}-{i2} removed"
        if op == "replace":
            assert set(range(i1 + 1, i2 + 1)) <= named, (op, i1, i2, named)
        else:  # insert: after line i1
            assert i1 in named or (i1 + 1) in named, (op, i1, named)
    for path, after in plan.files.items():
        assert after.endswith("\n") == files[path].endswith("\n")


def assert_minimal(plan: Plan, originals: Mapping[Path, str]) -> None:
    """(YAML planners) Only the lines the changes name are replaced; everything added is
    a comment line saying why followed by the knob; every other line is byte-identical."""
    named = {(c.file, c.line) for c in plan.changes}
    for path, op, i1, i2, j1, j2, lines in _edits(plan, originals):
        assert op in ("replace", "insert"), (op, originals[path].splitlines()[i1:i2])
        if op == "replace":
            assert i2 - i1 == j2 - j1, "a replaced line stays one line"
            for index in range(i1, i2):
                assert (path, index + 1) in named or _fix_comment(lines[j1 + index - i1]), index
        else:
            added = lines[j1:j2]
            assert len(added) % 2 == 0, added
            for comment, knob in zip(added[::2], added[1::2], strict=True):
                assert _fix_comment(comment), comment
                assert _indent(comment) == _indent(knob), (comment, knob)
                assert (path, i1) in named, (i1, knob)  # the block's last line


def _fix_comment(line: str) -> bool:
    return line.lstrip().startswith(_FIX_COMMENT)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def assert_idempotent(planner: Planner, plan: Plan, files: Mapping[Path, str],
                      found: Sequence[Finding]) -> None:  # fmt: skip
    patched = {**files, **plan.files}
    assert planner.plan(patched, found).empty


# --- the proxy's own acceptance ----------------------------------------------------------
def patched(tmp: Path, originals: Mapping[Path, str], plan: Plan) -> list[Path]:
    """The config's files, changed as the plan says, written to ``tmp`` (same names)."""
    out = []
    for path, text in originals.items():
        target = tmp / path.name
        target.write_text(plan.files.get(path, text), encoding="utf-8")
        out.append(target)
    return out


def _harness(proxy: str, sources: Sequence[Path], session: aiohttp.ClientSession) -> Harness:
    adapter = adapters.get(proxy)
    return Harness(adapter, adapter.find_binary(), tuple(sources), Thresholds(), session,
                   runtime=LocalRuntime())  # fmt: skip


def accepts(proxy: str, tmp_path: Path, files: Mapping[Path, str]) -> None:
    """The proxy's own config check passes on the rendered files (real binary): the
    files a proxy is given (every one for HAProxy's ``-f``, else the first, which
    includes the others) are written below ``tmp_path`` at their relative paths."""
    adapter = adapters.get(proxy)
    try:
        adapter.find_binary()
    except ProxytestError:
        pytest.skip(f"{proxy} is not installed")
    folder = tmp_path / "config"
    sources = []
    for path, text in files.items():
        dest = folder / (path.name if path.is_absolute() else path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        sources.append(dest)
    given = sources[: adapter.max_config_files]
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    config = render_config(
        load_config(given, adapter),
        Placeholders(LOOPBACK, 18080, LOOPBACK, 18081, run_dir, ((LOOPBACK, 18082),)),
    )

    async def check() -> None:
        async with new_session() as session:
            await _harness(proxy, given, session).validate(config)

    asyncio.run(check())  # raises ConfigRejected with the proxy's message


def accepted(proxy: str, sources: Sequence[Path], backends: int = 1) -> float:
    """Render the config, run the proxy's own config check (where it has one), start it
    and wait until a request reaches the origin: the seconds that took. Raises the
    harness's error (ConfigRejected, LaunchError) otherwise."""

    async def start() -> float:
        async with contextlib.AsyncExitStack() as stack, new_session() as session:
            origins = [await stack.enter_async_context(Origin(LOOPBACK)) for _ in range(backends)]
            harness = _harness(proxy, sources, session)
            async with harness.fronting(origins, validate=True) as instance:
                return instance.ready_s

    return asyncio.run(start())
