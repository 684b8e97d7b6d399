"""Console output: a live progress display, then a grid of targets × checks.

Below the grid, everything that is not a pass gets its summary and, for
failures, the hint naming the knob that fixes it. Then "SSE or WebSocket behind
this setup?" (reports/advice/): in full (rows and recommendation) for a run of
one target (`proxytest check`, `probe`, a one-target report); for several, one
line per target with its choice, since 19 targets × 9 rows would bury the grid:
the rows are in summary.md and report.html.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..matrix import TargetSpec
from ..results import CheckResult, RunResult, TargetResult, TargetStatus, Verdict
from .advice import TITLE, Advice, advise_result
from .fixes import fix_headline, render_fixes
from .grid import TINY as _TINY
from .grid import TINY_FAMILY as _TINY_FAMILY
from .grid import check_ids as _check_ids
from .grid import target_label

__all__ = ["LiveProgress", "render_advice", "render_details", "render_grid"]

_STYLE = {
    Verdict.PASS: ("pass", "green"),
    Verdict.DEGRADED: ("DEGR", "yellow"),
    Verdict.FAIL: ("FAIL", "red"),
    Verdict.ERROR: ("ERROR", "magenta"),
    Verdict.SKIP: ("skip", "dim"),
}


_SHORT = {"subprotocol": "subproto", "last-event-id": "last-id", "compression": "gzip",
          "connection-limit": "conn-limit",
          # security (issue 15, sec part)
          "smuggling": "smuggle", "handshake-strict": "strict",
          "upgrade-unrequested": "unasked"}  # fmt: skip
_SYMBOL = {
    Verdict.PASS: "✓",
    Verdict.DEGRADED: "≈",
    Verdict.FAIL: "✗",
    Verdict.ERROR: "!",
    Verdict.SKIP: "·",
}


def _cell(result: CheckResult, compact: bool = False) -> Text:
    word, style = _STYLE[result.verdict]
    if compact:
        word = _SYMBOL[result.verdict]
    if result.verdict not in (Verdict.PASS, Verdict.SKIP) and result.as_expected:
        return Text((word if compact else word.lower()) + "*", style=f"dim {style}")
    if result.unexpected_pass:
        return Text(word + "!", style="bold green")
    return Text(word, style=style if result.verdict == Verdict.PASS else f"bold {style}")


_SHOW_HELD_AFTER_S = 2.0  # a check running this long shows its time held so far


def _clock(seconds: float) -> str:
    """1:02:03, 4:05: a held time as a person reads a stopwatch."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LiveProgress:
    """The live display: one line per target with its phase and checks done."""

    def __init__(self, console: Console, targets: Sequence[TargetSpec], total_checks: int):
        self.console = console
        self.targets = list(targets)
        self.total = total_checks
        self.phase: dict[str, str] = {t.id: "waiting" for t in targets}
        self.done: dict[str, list[CheckResult]] = {t.id: [] for t in targets}
        # Checks that started and have not finished (``started``): shown with the
        # time held so far, refreshed by the display itself (probe mode's long holds).
        self.running: dict[str, float] = {}
        self.live = Live(
            console=console, refresh_per_second=4, transient=True, get_renderable=self._render
        )

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for target in self.targets:
            results = self.done[target.id]
            marks = Text()
            for result in results:
                _word, style = _STYLE[result.verdict]
                marks.append("■" if result.verdict != Verdict.SKIP else "□", style=style)
            table.add_row(
                Text(target.id, style="bold"),
                Text(self.phase[target.id], style="cyan"),
                Text(f"{len(results)}/{self.total}"),
                marks,
            )
        finished = {r.check for results in self.done.values() for r in results}
        now = time.monotonic()
        for check_id, since in self.running.items():
            if check_id not in finished and now - since >= _SHOW_HELD_AFTER_S:
                table.add_row(
                    Text(f"  {check_id}", style="dim"),
                    Text(f"held {_clock(now - since)}", style="cyan"),
                    Text(""),
                    Text(""),
                )
        return table

    def started(self, check_id: str) -> None:
        """A check's probe started (its held time shows once it takes a while)."""
        self.running[check_id] = time.monotonic()

    def _refresh(self) -> None:
        self.live.update(self._render())

    def target_phase(self, target: TargetSpec, phase: str) -> None:
        self.phase[target.id] = phase
        self._refresh()

    def check_done(self, target: TargetSpec, result: CheckResult) -> None:
        self.done[target.id].append(result)
        self._refresh()

    def target_done(self, result: TargetResult) -> None:
        self.phase[result.id] = {
            TargetStatus.OK: "done",
            TargetStatus.SKIPPED: "skipped",
            TargetStatus.ERROR: "error",
        }[result.status]
        if not self.done[result.id]:
            self.done[result.id] = list(result.results)
        self._refresh()


def _header(check_id: str, compact: bool) -> str:
    check, at, transport = check_id.partition("@")
    family, _, name = check.partition(".")
    if compact:
        return f"{_TINY_FAMILY.get(family, family)}{at}{transport}\n{_TINY.get(name, name)}"
    return f"{family}{at}{transport}\n{_SHORT.get(name, name)}"


def _fits(run: RunResult, ids: list[str], compact: bool) -> int:
    """The width a one-table grid of ``ids`` needs."""
    target = max((len(target_label(t)) for t in run.targets), default=6) + 2
    if compact:
        return target + 6 * len(ids)
    version = max((len(t.proxy_version or "-") for t in run.targets), default=7) + 3
    columns = sum(max(len(line) for line in _header(i, False).split("\n")) + 3 for i in ids)
    return target + version + max(columns, 0)


def _chunks(run: RunResult, ids: list[str], width: int) -> list[list[str]]:
    """Split the check columns into tables that each fit ``width``."""
    chunks: list[list[str]] = [[]]
    for check_id in ids:
        trial = [*chunks[-1], check_id]
        if chunks[-1] and _fits(run, trial, True) > width:
            chunks.append([check_id])
        else:
            chunks[-1] = trial
    return chunks


def render_grid(run: RunResult, width: int = 200) -> Group:
    """Targets × checks. Too narrow for words: symbols and short headers, then several tables."""
    ids = _check_ids(run)
    compact = _fits(run, ids, False) > width
    chunks = _chunks(run, ids, width) if compact else [ids]
    tables = []
    for n, chunk in enumerate(chunks):
        table = Table(
            title="proxytest" if n == 0 else None,
            title_style="bold",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=(0, 0) if compact else (0, 1),
        )
        table.add_column("target", style="bold", no_wrap=True, min_width=16 if compact else None)
        if not compact:
            table.add_column("version", style="dim", no_wrap=True)
        for check_id in chunk:
            table.add_column(
                _header(check_id, compact),
                justify="center",
                no_wrap=True,
                min_width=5 if compact else None,
            )
        for target in run.targets:
            by_id = {r.check: r for r in target.results}
            cells = [_cell(by_id[c], compact) if c in by_id else Text("") for c in chunk]
            version = [] if compact else [target.proxy_version or "-"]
            table.add_row(target_label(target), *version, *cells)
        tables.append(table)
    return Group(*tables)


def _legend(run: RunResult, compact: bool) -> Text:
    text = Text(style="dim")
    if compact:
        text.append("✓ pass  ≈ degraded  ✗ fail  ! error  · skip   ")
        versions = {f"{t.proxy} {t.proxy_version}" for t in run.targets if t.proxy_version}
        if versions:
            text.append("(" + ", ".join(sorted(versions)) + ")\n")
    text.append("* expected by the matrix   ! passes although the matrix expects a failure")
    return text


def render_details(run: RunResult) -> Group:
    """Everything below pass, grouped so one root cause is told once."""
    lines: list[Text] = []
    for target in run.targets:
        if target.status != TargetStatus.OK:
            word = "skipped" if target.status == TargetStatus.SKIPPED else "ERROR"
            style = "dim" if target.status == TargetStatus.SKIPPED else "bold magenta"
            if target.not_run:
                word, style = "NOT RUN", "bold red"
            lines.append(
                Text.assemble((f"{target.id}: {word}: ", style), (target.reason or "", ""))
            )
            continue
        groups: dict[tuple[Verdict, str, str | None, bool], list[CheckResult]] = {}
        for result in sorted(target.results, key=lambda r: -r.verdict.rank):
            if result.verdict == Verdict.SKIP or (
                result.verdict == Verdict.PASS and not result.unexpected_pass
            ):
                continue
            key = (result.verdict, result.summary, result.hint, result.as_expected)
            groups.setdefault(key, []).append(result)
        shown_hints: set[str] = set()
        for (verdict, summary, hint, _), results in groups.items():
            style = _STYLE[verdict][1]
            word = verdict.value.upper()
            first = results[0]
            tag = " (expected)" if first.as_expected else ""
            if first.unexpected_pass:
                tag = f" (matrix expects {first.expected}: update it)"
            names = ", ".join(r.check for r in results)
            lines.append(
                Text.assemble(
                    (f"{target.id} ", "bold"),
                    (f"{names} ", ""),
                    (f"{word}{tag}", style),
                    ": ",
                    summary,
                )
            )
            if hint and hint not in shown_hints:
                shown_hints.add(hint)
                lines.append(Text(f"    fix: {hint}", style="italic"))
    return Group(*lines)


_SIDE_STYLE = {"good": "green", "caveat": "yellow", "bad": "red", "not-measured": "dim"}
_ROW_MARK = {
    "good": ("✓", "green"),
    "mixed": ("≈", "yellow"),
    "bad": ("✗", "red"),
    "not-measured": ("·", "dim"),
}


def _advice_table(advice: Advice) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=True)
    table.add_column("", no_wrap=True, width=1)
    table.add_column("claim", style="bold", ratio=2)
    table.add_column("SSE", ratio=4)
    table.add_column("WebSocket", ratio=4)
    for row in advice.rows:
        mark, style = _ROW_MARK[row.status]
        sides = [
            Text("(SSE only)", style="dim")
            if side is None
            else Text(side.text, style=_SIDE_STYLE.get(side.state, ""))
            for side in (row.sse, row.ws)
        ]
        table.add_row(Text(mark, style=style), row.claim, *sides)
    return table


def _bullets(sentences: Sequence[str]) -> Table:
    """One sentence a line, wrapped under itself (a hanging indent)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column()
    for sentence in sentences:
        table.add_row("  •", sentence)
    return table


def render_advice(run: RunResult) -> Group:
    """The section: in full for one target, one line per target for several."""
    advices = [advise_result(target) for target in run.targets]
    if not advices:
        return Group()
    if len(advices) == 1:
        advice = advices[0]
        lines: list[Text | Table] = [
            Text.assemble((TITLE, "bold"), "  ", (advice.target, "bold cyan")),
            _advice_table(advice),
            Text("Recommendation", style="bold"),
            _bullets(advice.recommendation),
        ]
        return Group(*lines)
    out: list[Text | Table] = [
        Text.assemble(
            (TITLE, "bold"),
            (" (the rows of each target: summary.md and report.html of --report-dir)", "dim"),
        )
    ]
    width = max(len(a.target) for a in advices) + 2
    for advice in advices:
        style = "dim" if advice.choice == "not measured" else ""
        out.append(
            Text.assemble(
                (f"  {advice.target:<{width}}", "bold"), (advice.brief, style), no_wrap=False
            )
        )
    return Group(*out)


def print_report(console: Console, run: RunResult) -> None:
    ids = _check_ids(run)
    console.print(render_grid(run, console.width))
    console.print(_legend(run, _fits(run, ids, False) > console.width))
    details = render_details(run)
    if details.renderables:
        console.print()
        console.print(details)
    if run.fixes:
        console.print(render_fixes(run))
    advice = Group() if run.fixes else render_advice(run)
    if advice.renderables:
        console.print()
        console.print(advice)
    kept = [(t.id, d) for t in run.targets for d in t.run_dirs]
    if kept:
        console.print()
        console.print("Run dirs kept (rendered configs and logs; no later run removes them):")
        for target_id, run_dir in kept:
            console.print(Text.assemble("  ", (target_id, "bold"), f"  {run_dir}"))
    counts: dict[Verdict, int] = {}
    for target in run.targets:
        for result in target.results:
            counts[result.verdict] = counts.get(result.verdict, 0) + 1
    summary = ", ".join(
        f"{n} {v.value}" for v, n in sorted(counts.items(), key=lambda x: x[0].rank)
    )
    verdict = "as expected" if run.as_expected else "UNEXPECTED RESULTS"
    if not run.measured:
        verdict = "NOTHING MEASURED (every check skipped)"
    style = "bold green" if run.as_expected else "bold red"
    if run.fixes:  # `proxytest fix`: the grid was the first run; the fixes are the verdict
        verdict, style = fix_headline(run), "bold green" if run.exit_code == 0 else "bold red"
    counted = f"{len(run.targets)} targets, {summary}"
    if run.fixes:
        counted = f"before the patch {counted}; both runs"
    console.print()
    console.print(Text.assemble((f"{verdict}: ", style), f"{counted} in {run.duration_s:.1f} s"))
