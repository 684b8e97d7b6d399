"""What every planner test asserts about a plan, and the proxy's own acceptance of it."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
from collections.abc import Sequence
from pathlib import Path

from proxytest.adapters import ADAPTERS
from proxytest.fixes.base import Plan
from proxytest.harness import Harness
from proxytest.origin import Origin
from proxytest.probes.context import new_session
from proxytest.runtimes import LOOPBACK, LocalRuntime
from proxytest.timing import Thresholds


def assert_minimal(plan: Plan, originals: dict[Path, str]) -> None:
    """Only the lines the changes name are replaced; everything added is a comment line
    saying why followed by the knob; every other line is byte-identical."""
    named = {(c.file, c.line) for c in plan.changes}
    for path, after in plan.files.items():
        before = originals[path].splitlines(keepends=True)
        lines = after.splitlines(keepends=True)
        matcher = difflib.SequenceMatcher(a=before, b=lines, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            assert tag in ("replace", "insert"), (tag, before[i1:i2])
            if tag == "replace":
                assert i2 - i1 == j2 - j1, "a replaced line stays one line"
                for index in range(i1, i2):
                    assert (path, index + 1) in named or _comment(lines[j1 + index - i1]), index
            else:
                added = lines[j1:j2]
                assert len(added) % 2 == 0, added
                for comment, knob in zip(added[::2], added[1::2], strict=True):
                    assert comment.lstrip().startswith("# proxytest fix: "), comment
                    assert _indent(comment) == _indent(knob), (comment, knob)
                    assert (path, i1) in named, (i1, knob)  # the block's last line


def _comment(line: str) -> bool:
    return line.lstrip().startswith("# proxytest fix: ")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def patched(tmp: Path, originals: dict[Path, str], plan: Plan) -> list[Path]:
    """The config's files, changed as the plan says, written to ``tmp`` (same names)."""
    out = []
    for path, text in originals.items():
        target = tmp / path.name
        target.write_text(plan.files.get(path, text), encoding="utf-8")
        out.append(target)
    return out


def accepted(proxy: str, sources: Sequence[Path], backends: int = 1) -> float:
    """Render the config, run the proxy's own config check (where it has one), start it
    and wait until a request reaches the origin: the seconds that took. Raises the
    harness's error (ConfigRejected, LaunchError) otherwise."""

    async def start() -> float:
        adapter = ADAPTERS[proxy]
        async with contextlib.AsyncExitStack() as stack, new_session() as session:
            origins = [await stack.enter_async_context(Origin(LOOPBACK)) for _ in range(backends)]
            harness = Harness(
                adapter, adapter.find_binary(), tuple(sources), Thresholds(), session,
                runtime=LocalRuntime(),
            )  # fmt: skip
            async with harness.fronting(origins, validate=True) as instance:
                return instance.ready_s

    return asyncio.run(start())
