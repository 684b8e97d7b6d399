"""summary.md: a compact grid for a CI job page (GitHub step summary, GitLab, PR comments).

Rows are setups, columns the checks present (four-letter labels under their
family), one emoji per cell. Below: a legend, the overall line, and one line
per result that is not a plain pass, with its summary and the knob that fixes it.
Last, "SSE or WebSocket behind this setup?" (reports/advice/): per target, its
choice in one line, and in a ``<details>`` block (open for a run of one target)
the rows and the recommendation.
When ``GITHUB_STEP_SUMMARY`` is set, the same text is appended to that file.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from ..results import RunResult, TargetStatus
from .advice import TITLE, Advice, advise_result
from .fixes import FIX_STATES, OUTCOME_STATE, fix_headline
from .grid import by_cause, cell_state, check_ids, overall, short_label

__all__ = ["EMOJI", "append_step_summary", "render_markdown"]

EMOJI = {
    "pass": "✅",
    "degraded": "🟡",
    "fail": "❌",
    "error": "⚠️",
    "skip": "➖",
    "known": "🔸",
    "stale": "✅❕",
}
_LEGEND = (
    "✅ pass · 🟡 degraded · ❌ fail · ⚠️ error (the harness could not judge) · ➖ skipped · "
    "🔸 a failure the matrix expects · ✅❕ passes although the matrix expects a failure"
)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _escape(text: str) -> str:
    """Plain text inside Markdown (tables included): no markup, no HTML, one line."""
    return _markup(" ".join(_CONTROL.sub("", text).split()))


def _markup(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def _prose(text: str) -> str:
    """Like ``_escape``, but a hint's `code spans` stay code (they name the knobs)."""
    text = " ".join(_CONTROL.sub("", text).split())
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(part if part.startswith("`") else _markup(part) for part in parts)


def _inline_html(text: str) -> str:
    """Text inside an HTML element (a ``<summary>``: no Markdown there), `code` kept."""
    text = " ".join(_CONTROL.sub("", text).split())
    parts = re.split(r"`([^`]+)`", text)
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def render_markdown(run: RunResult) -> str:
    ids = check_ids(run)
    total = overall(run)
    mark = "✅" if total.as_expected else "❌"
    title = "as expected" if total.as_expected else "unexpected results"
    line = total.line
    if run.fixes:  # `proxytest fix`: the fixes are the verdict; the grid is the first run
        mark, title = ("✅" if run.exit_code == 0 else "❌"), fix_headline(run)
        line = f"before the patch: {total.details}"
    lines = [
        f"## {mark} proxytest: {title}",
        "",
        f"**{_escape(line)}** · proxytest {_escape(run.tool_version)} · "
        f"started {_escape(run.started_at)} · {run.duration_s:.1f} s",
        "",
    ]
    header = ["setup", *(f"{fam}<br>{name}" for fam, name in map(short_label, ids))]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|:--" + "|:-:" * len(ids) + "|")
    for target in run.targets:
        by_id = {r.check: r for r in target.results}
        cells = [EMOJI[cell_state(by_id[c])] if c in by_id else "" for c in ids]
        label = _code(target.id) + (" (TLS)" if target.tls else "")
        lines.append("| " + " | ".join([label, *cells]) + " |")
    lines += ["", _LEGEND + "  ", "columns: " + ", ".join(
        f"{name} = {_code(c)}" for c, (_fam, name) in zip(ids, map(short_label, ids), strict=True)
    )]  # fmt: skip
    details = _details(run)
    if details:
        lines += ["", "### Not passing", "", *details]
    if run.fixes:
        lines += _fixes(run)
    advices = [] if run.fixes else [advise_result(target) for target in run.targets]
    if advices:
        lines += ["", f"### {TITLE}", ""]
        for advice in advices:
            lines += _advice(advice, opened=len(advices) == 1)
    return "\n".join(lines) + "\n"


ADVICE_EMOJI = {"good": "✅", "caveat": "🟡", "bad": "❌", "not-measured": "➖", "fact": "ℹ️"}


def _advice(advice: Advice, opened: bool) -> list[str]:
    """One target's section: a ``<details>`` block whose summary is the choice in a line."""
    summary = f"<b>{_inline_html(advice.target)}</b>: {_inline_html(advice.brief)}"
    lines = [f"<details{' open' if opened else ''}><summary>{summary}</summary>", ""]
    lines += ["| claim | SSE | WebSocket |", "|:--|:--|:--|"]
    for row in advice.rows:
        cells = [
            "(SSE only)" if side is None else f"{ADVICE_EMOJI[side.state]} {_prose(side.text)}"
            for side in (row.sse, row.ws)
        ]
        lines.append(f"| {_escape(row.claim)} | {cells[0]} | {cells[1]} |")
    lines += ["", "**Recommendation**", ""]
    lines += [f"- {_prose(sentence)}" for sentence in advice.recommendation]
    lines += ["", "</details>", ""]
    return lines


def _fixes(run: RunResult) -> list[str]:
    """`proxytest fix`: per target a ``<details>`` with the diff and the table."""
    lines = ["", "### Proven fixes", ""]
    for fix in run.fixes:
        word, state = FIX_STATES[fix.status]
        opened = " open" if fix.patch else ""
        summary = f"{EMOJI[state]} <b>{_inline_html(fix.target)}</b>: {_inline_html(word)}"
        lines += [f"<details{opened}><summary>{summary}</summary>", "", _prose(fix.summary), ""]
        if fix.patch:
            fence = "````" if "```" in fix.patch else "```"
            lines += [f"{fence}diff", fix.patch.rstrip("\n"), fence, ""]
        if fix.changes:
            lines += ["| check | before | after | outcome |", "|:--|:--|:--|:--|"]
            for row in fix.rows:
                after = "—" if row.after is None else row.after.value
                emoji = EMOJI[OUTCOME_STATE.get(row.outcome, "skip")]
                lines.append(
                    f"| {_code(row.check)} | {row.before.value} | {after} | {emoji} {row.outcome} |"
                )
            lines.append("")
        for refusal in fix.refusals:
            line = f"- {_code(refusal.check)}: {_prose(refusal.reason)} {_prose(refusal.remedy)}"
            if refusal.proposal:
                line += f" Proposed, not made: {_code(refusal.proposal)}"
            lines.append(line)
        if fix.written:
            lines.append(f"- written: {', '.join(map(_code, fix.written))} "
                         f"(backup: {', '.join(map(_code, fix.backups))})")  # fmt: skip
        lines += ["", "</details>", ""]
    return lines


def _details(run: RunResult) -> list[str]:
    lines: list[str] = []
    for target in run.targets:
        name = f"**{_escape(target.id)}**"
        if target.status != TargetStatus.OK:
            word, emoji = (
                ("skipped", EMOJI["skip"])
                if target.status == TargetStatus.SKIPPED
                else ("error", EMOJI["error"])
            )
            if target.not_run:
                word, emoji = "not run", EMOJI["fail"]
            reason = (target.reason or "").strip().splitlines()
            lines.append(f"- {emoji} {name} {word}: {_escape(reason[0] if reason else '')}")
            continue
        for results in by_cause(target):
            first = results[0]
            state, hint = cell_state(first), first.hint
            tag = first.verdict.value
            if state == "known":
                tag += " (expected)"
            elif state == "stale":
                tag = f"pass, but the matrix expects {first.expected}: update it"
            line = f"- {EMOJI[state]} {name} {_code(first.check)} {tag}: {_escape(first.summary)}"
            if len(results) > 1:
                line += " (also " + ", ".join(_code(r.check) for r in results[1:]) + ")"
            if hint and state != "stale":
                line += f" — fix: {_prose(hint)}"
            lines.append(line)
    return lines


def append_step_summary(text: str) -> Path | None:
    """Append ``text`` to ``$GITHUB_STEP_SUMMARY`` when that is set; return its path."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return path
