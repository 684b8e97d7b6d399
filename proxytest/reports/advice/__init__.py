"""The "SSE or WebSocket behind this setup?" section: rows and a recommendation per target.

``advise(target)`` reads ONE target's JSON form (an item of ``"targets"`` in the
JSON report, or ``TargetResult.to_json()``) and returns an ``Advice``: rows in a
fixed order, each a claim people bring to the choice, answered for SSE and for
WebSocket from this run's results, with the check IDs it comes from; then a
recommendation built from those rows and the results they cite (summaries,
hints), with ``choice`` and a one-line ``brief``. Nothing here knows a proxy
by name: two targets with the same results get the same advice.

    model.py      Answer, Row, Advice
    read.py       one target's results by check ID and metric name; the words
    rows.py       the rows, in order
    recommend.py  the choice, the brief and the sentences

It is pure (a dict in, frozen data out) and reads results by check ID and
metric name only, so a check that is absent, skipped, errored or not run
makes its answer "not measured (why)", and checks added later (``lb.sticky``,
``lb.failover``, ``load.fanout``) fill their rows as soon as their results
appear in the JSON.

Each side of a row has a *state*: ``good`` (as a direct connection),
``caveat`` (works, with a condition: a heartbeat, a delay, 6 per host), ``bad``
(broken), ``not-measured``, or ``fact`` (true of the protocol, not a
measurement: SSE carries server-to-client text only). A row's *status* is
``good``/``bad`` when every measured side is, ``mixed`` otherwise, and
``not-measured`` when no side was measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...results import TargetResult
from .model import TITLE, Advice, Answer, Row
from .read import Results, short
from .recommend import recommend
from .rows import ROWS

__all__ = ["TITLE", "Advice", "Answer", "Row", "advise", "advise_result"]


def advise(target: Mapping[str, Any]) -> Advice:
    """The advice for one target, from its JSON form (``TargetResult.to_json()``)."""
    target_id = str(target.get("id", "?"))
    results = Results(target)
    rows = tuple(build(results) for build in ROWS)
    if target.get("status", "ok") != "ok":
        reason = short(str(target.get("reason") or target.get("status")), 120)
        return Advice(
            target_id,
            rows,
            "not measured",
            "not measured (the setup did not run)",
            (f"Not measured: the setup did not run ({reason}).",),
        )
    choice, brief, sentences = recommend(results, {row.key: row for row in rows})
    return Advice(target_id, rows, choice, brief, tuple(sentences))


def advise_result(target: TargetResult) -> Advice:
    """The advice of a ``TargetResult`` (a live run's, or a report's read back): from its
    JSON form, so a report redrawn from results.json says exactly what the run said."""
    return advise(target.to_json())
