"""`proxytest fix` in the reports: per target, the verdict, the patch, before → after.

Everything comes from the run's ``fixes`` (``TargetFix``, JSON key "fixes"), so
``proxytest report`` redraws it from results.json. The console, summary.md
and report.html show the same three parts: a headline (proven, unproven, …),
the unified diff, and the table of checks before → after; then what was left
alone and why (no config change here, or a choice the user must make).
"""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..results import FixStatus, RunResult, TargetFix

__all__ = [
    "FIX_STATES",
    "OUTCOME_STATE",
    "diff_kind",
    "fix_headline",
    "render_fixes",
    "status_word",
]

# Each status as a word and the report's state (pass, degraded, fail, error, skip colours).
FIX_STATES: dict[FixStatus, tuple[str, str]] = {
    FixStatus.PROVEN: ("proven", "pass"),
    FixStatus.NOTHING: ("nothing to fix", "pass"),
    FixStatus.PROVEN_IN_PART: ("proven in part", "degraded"),
    FixStatus.UNPROVEN: ("unproven", "fail"),
    FixStatus.NO_CONFIG_CHANGE: ("no config change", "fail"),
    FixStatus.NOT_MEASURED: ("not measured", "error"),
}
OUTCOME_STATE = {"fixed": "pass", "kept": "pass", "fixed in part": "degraded",
                 "not fixed": "fail", "regressed": "fail", "not re-run": "skip"}  # fmt: skip
_COLOUR = {"pass": "green", "degraded": "yellow", "fail": "red", "error": "magenta", "skip": "dim"}


def status_word(status: FixStatus) -> str:
    return FIX_STATES[status][0]


def fix_headline(run: RunResult) -> str:
    """``"fix: 2 proven, 1 unproven"``: the count of each status, best first."""
    counts: dict[FixStatus, int] = {}
    for fix in run.fixes:
        counts[fix.status] = counts.get(fix.status, 0) + 1
    order = list(FIX_STATES)
    parts = [
        f"{n} {status_word(s)}" for s, n in sorted(counts.items(), key=lambda x: order.index(x[0]))
    ]
    return "fix: " + ", ".join(parts)


def diff_kind(line: str) -> str:
    """A unified diff line's kind: file, hunk, add, del or context."""
    if line.startswith(("--- ", "+++ ")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "context"


_DIFF_STYLE = {"file": "bold", "hunk": "cyan", "add": "green", "del": "red", "context": ""}


def _rows(fix: TargetFix) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in ("check", "before", "after", "outcome"):
        table.add_column(name, no_wrap=True)
    table.add_column("after the patch", ratio=1)
    for row in fix.rows:
        colour = _COLOUR[OUTCOME_STATE.get(row.outcome, "skip")]
        after = "—" if row.after is None else row.after.value
        summary = row.summary if row.after is not None else ""
        table.add_row(row.check, row.before.value, after, Text(row.outcome, style=colour), summary)
    return table


def _left_alone(fix: TargetFix) -> list[Text]:
    lines = []
    for refusal in fix.refusals:
        text = f"  • {refusal.check}: {refusal.reason} {refusal.remedy}"
        if refusal.proposal:
            text += f" Proposed, not made: {refusal.proposal}"
        lines.append(Text(text))
    return lines


def render_fixes(run: RunResult, *, write_hint: bool = True) -> Group:
    """The console's section, one block per target."""
    out: list[Text | Table] = []
    for fix in run.fixes:
        word, state = FIX_STATES[fix.status]
        out += [Text(), Text.assemble(("Fix ", "bold"), (fix.target, "bold cyan"), "  ",
                                      (word.upper(), f"bold {_COLOUR[state]}"))]  # fmt: skip
        out.append(Text(fix.summary))
        if fix.patch:
            out.append(Text())
            for line in fix.patch.splitlines():
                out.append(Text(line, style=_DIFF_STYLE[diff_kind(line)], no_wrap=True))
        if fix.changes:
            out.append(Text())
            out.append(_rows(fix))
        if fix.refusals:
            out.append(Text("Left alone (what to do instead):", style="bold"))
            out += _left_alone(fix)
        if write_hint and fix.status.writable and not fix.written:
            out.append(Text(
                "Nothing of yours was changed: run again with --write to apply this proven "
                "patch (a .bak copy of each file goes beside it), or apply the diff yourself.",
                style="italic",
            ))  # fmt: skip
        elif fix.status == FixStatus.UNPROVEN:
            out.append(Text("Not proven, so never written: the table says which check "
                            "did not pass on the patched copy.", style="italic"))  # fmt: skip
    return Group(*out)
