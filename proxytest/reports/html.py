"""report.html: one self-contained page (inline CSS, SVG and a few lines of script).

The page shows the run's header and overall result, the grid of setups ×
checks (each cell a ``td.cell`` with ``data-target``, ``data-check``,
``data-verdict`` and ``data-state``), and for each cell a details panel: summary,
hint, metrics, expectation, duration, the proxy's version and runtime, the
setup's config files, and for stream checks a ladder chart of send vs arrival
time (``svg.timeline``, one ``g.event`` per event). Below the problems, "SSE or
WebSocket behind this setup?" (reports/advice/): per setup a ``details.advice``
(``data-choice``), its rows (``tr[data-row]``, each side a ``td`` with
``data-state``) and the recommendation.

Clicking a cell follows a link to its panel; CSS ``:target`` shows it, so the
page works without script. The script only marks the chosen cell and copies
the setup's config files into the panel (they are printed once per setup, at
the bottom). Rendered with Jinja2, autoescaping on: every string from a run
(summaries, hints, config text) is escaped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jinja2
import markupsafe

from ..results import CheckResult, RunResult, TargetResult, TargetStatus
from .advice import TITLE, advise_result
from .badges import overall_badge, target_badge
from .charts import PROMPT_MS, Ladder, ladder
from .fixes import FIX_STATES, OUTCOME_STATE, diff_kind, fix_headline
from .grid import STATES, by_cause, cell_state, check_ids, overall, short_label

__all__ = ["render_html"]

SYMBOLS = {
    "pass": "✓",
    "degraded": "≈",
    "fail": "✗",
    "error": "!",
    "skip": "–",
}


@dataclass
class Detail:
    id: str
    target: TargetResult
    setup_id: str
    result: CheckResult
    state: str
    chart: Ladder | None
    metrics: list[tuple[str, str]] = field(default_factory=list)


def _metric(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        # A list metric such as load.fanout's curve: a line of key=value per point.
        return "; ".join(" ".join(f"{k}={_metric(v)}" for k, v in point.items()) for point in value)
    return json.dumps(value, ensure_ascii=False)


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _printable(value: Any) -> Any:
    """Every value printed into the page loses control characters (ANSI escapes, NULs)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return _CONTROL.sub("", value)
    return value  # numbers, and markup such as a macro's output (already printed)


def _knobs(text: str) -> markupsafe.Markup:
    """A hint, escaped, with its `code spans` (the knobs to set) as <code>."""
    parts = re.split(r"`([^`]+)`", _CONTROL.sub("", text))
    return markupsafe.Markup("").join(
        markupsafe.Markup("<code>{}</code>").format(p) if i % 2 else markupsafe.escape(p)
        for i, p in enumerate(parts)
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("proxytest.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_printable,
    )
    env.filters["knobs"] = _knobs
    env.filters["diff_kind"] = diff_kind
    return env


def render_html(run: RunResult) -> str:
    ids = check_ids(run)
    columns = [(c, *short_label(c)) for c in ids]
    rows = []
    details: list[Detail] = []
    for ti, target in enumerate(run.targets):
        by_id = {r.check: r for r in target.results}
        cells: list[Detail | None] = []
        for ci, check in enumerate(ids):
            result = by_id.get(check)
            if result is None:
                cells.append(None)
                continue
            timeline = result.timeline_json()
            detail = Detail(
                id=f"r{ti}-{ci}",
                target=target,
                setup_id=f"setup-{ti}",
                result=result,
                state=cell_state(result),
                chart=ladder(timeline) if timeline else None,
                metrics=[(k, _metric(v)) for k, v in result.metrics.items()],
            )
            cells.append(detail)
            details.append(detail)
        rows.append((target, f"setup-{ti}", target_badge(target), cells))
    by_result = {id(d.result): d for d in details}
    problems = [
        (target, f"setup-{ti}", [[by_result[id(r)] for r in group] for group in by_cause(target)])
        for ti, target in enumerate(run.targets)
    ]
    template = _environment().get_template("report.html.j2")
    return template.render(
        run=run,
        total=overall(run),
        badge=overall_badge(run),
        columns=columns,
        rows=rows,
        details=details,
        problems=problems,
        advices=[(t, f"setup-{ti}", advise_result(t)) for ti, t in enumerate(run.targets)],
        advice_title=TITLE,
        fix_states=FIX_STATES,
        fix_title=fix_headline(run) if run.fixes else "",
        outcome_state=OUTCOME_STATE,
        states=STATES,
        symbols=SYMBOLS,
        prompt_ms=PROMPT_MS,
        TargetStatus=TargetStatus,
    )
