"""What every planner test asserts: the smallest edit, the proxy accepts it, idempotence."""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from proxytest import adapters
from proxytest.errors import ProxytestError
from proxytest.fixes.base import Finding, Plan, Planner
from proxytest.harness import Harness
from proxytest.probes.context import new_session
from proxytest.results import Failure
from proxytest.runtimes import LOOPBACK, LocalRuntime
from proxytest.templates import Placeholders, load_config, render_config
from proxytest.timing import Thresholds


def findings(*pairs: str, **metrics: float) -> list[Finding]:
    """``"sse.idle:idle"`` … as Findings (``metrics`` given to each)."""
    return [Finding(p.split(":")[0], Failure(p.split(":")[1]), dict(metrics)) for p in pairs]


def assert_smallest(plan: Plan, files: Mapping[Path, str]) -> None:
    """Every original line the plan does not name is kept byte for byte, in order: a
    removed or rewritten line is one a Change names, new lines follow one it names."""
    for path, after in plan.files.items():
        before = files[path].splitlines(keepends=True)
        new = after.splitlines(keepends=True)
        named = {c.line for c in plan.changes if c.file == path}
        matcher = difflib.SequenceMatcher(None, before, new, autojunk=False)
        for op, i1, i2, _, _ in matcher.get_opcodes():
            if op == "equal":
                continue
            assert op != "delete", f"{path}: lines {i1 + 1}-{i2} removed"
            if op == "replace":
                assert set(range(i1 + 1, i2 + 1)) <= named, (op, i1, i2, named)
            else:  # insert: after line i1
                assert i1 in named or (i1 + 1) in named, (op, i1, named)
        assert after.endswith("\n") == files[path].endswith("\n")


def assert_idempotent(planner: Planner, plan: Plan, files: Mapping[Path, str],
                      found: Sequence[Finding]) -> None:  # fmt: skip
    patched = {**files, **plan.files}
    assert planner.plan(patched, found).empty


def accepts(proxy: str, tmp_path: Path, files: Mapping[Path, str]) -> None:
    """The proxy's own config check passes on the rendered patched files (real binary)."""
    adapter = adapters.get(proxy)
    try:
        binary = adapter.find_binary()
    except ProxytestError:
        pytest.skip(f"{proxy} is not installed")
    folder = tmp_path / "config"
    sources = []
    for path, text in files.items():
        dest = folder / (path.name if path.is_absolute() else path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        sources.append(dest)
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    config = render_config(
        load_config(sources[:1], adapter),
        Placeholders(LOOPBACK, 18080, LOOPBACK, 18081, run_dir, ((LOOPBACK, 18082),)),
    )

    async def check() -> None:
        async with new_session() as session:
            harness = Harness(adapter, binary, sources[:1], Thresholds(), session,
                              runtime=LocalRuntime())  # fmt: skip
            await harness.validate(config)

    asyncio.run(check())  # raises ConfigRejected with the proxy's message
