"""Read a saved JSON report back into a ``RunResult``.

Every report file is rendered from the JSON form of a run: a live run is
turned into JSON first, so ``proxytest report results.json`` redraws exactly
what the run drew. Reading validates the shape (the contract in
docs/architecture.md plus the additive ``config_files``, ``timeline``, ``shard``
``matrix_targets`` and ``fixes`` keys)
and names the bad key by its path, e.g. ``targets[1].results[3].verdict``.
Unknown keys are ignored, so reports from newer versions still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ReportError
from ..results import (
    CheckResult,
    ConfigFile,
    FixChange,
    FixRefusal,
    FixRow,
    FixStatus,
    RunResult,
    TargetFix,
    TargetResult,
    TargetStatus,
    Verdict,
)

__all__ = ["read_report", "run_from_json"]

_FIX = "pass the JSON report of a run: `--json PATH`, or results.json in a --report-dir"


class _Bad(Exception):
    def __init__(self, where: str, problem: str) -> None:
        self.where, self.problem = where, problem


def _get(data: Mapping[str, Any], key: str, where: str, kinds: tuple[type, ...]) -> Any:
    if key not in data:
        raise _Bad(f"{where}.{key}".lstrip("."), "missing")
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise _Bad(f"{where}.{key}".lstrip("."), f"expected {names}, got {value!r:.60}")
    return value


def _enum(
    value: str, enum: type[Verdict] | type[TargetStatus] | type[FixStatus], where: str
) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(v.value for v in enum)
        raise _Bad(where, f"{value!r} is not one of {choices}") from None


def _result(data: Any, where: str) -> CheckResult:
    if not isinstance(data, Mapping):
        raise _Bad(where, "expected an object")
    expected = _get(data, "expected", where, (str, type(None)))
    timeline = data.get("timeline")
    if timeline is not None and not isinstance(timeline, Mapping):
        raise _Bad(f"{where}.timeline", "expected an object")
    if timeline is not None:
        events = _get(timeline, "events", f"{where}.timeline", (list,))
        for n, event in enumerate(events):
            if (
                not isinstance(event, list)
                or len(event) != 3
                or not all(isinstance(v, int | float) for v in event)
            ):
                raise _Bad(f"{where}.timeline.events[{n}]", "expected [seq, sent_ms, arrived_ms]")
    return CheckResult(
        check=_get(data, "check", where, (str,)),
        verdict=_enum(_get(data, "verdict", where, (str,)), Verdict, f"{where}.verdict"),
        summary=_get(data, "summary", where, (str,)),
        expected=None if expected is None else _enum(expected, Verdict, f"{where}.expected"),
        hint=_get(data, "hint", where, (str, type(None))),
        metrics=dict(_get(data, "metrics", where, (dict,))),
        duration_s=float(_get(data, "duration_s", where, (int, float))),
        timeline=dict(timeline) if timeline is not None else None,
        not_run=bool(_get(data, "not_run", where, (bool,))) if "not_run" in data else False,
        tries=tuple(_tries(data.get("attempts"), f"{where}.attempts")),
        failure=_get(data, "failure", where, (str, type(None))) if "failure" in data else None,
    )


def _tries(data: Any, where: str) -> list[dict[str, Any]]:
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(t, Mapping) for t in data):
        raise _Bad(where, "expected a list of objects")
    return [dict(t) for t in data]


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """An optional list: missing or null reads as empty."""
    value = data.get(key) or []
    if not isinstance(value, list):
        raise _Bad(f"{where}.{key}".lstrip("."), "expected a list")
    return value


def _object(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _Bad(where, "expected an object")
    return data


def _files(data: Mapping[str, Any], key: str, where: str) -> tuple[ConfigFile, ...]:
    files = []
    for n, item in enumerate(_list(data, key, where)):
        at = f"{where}.{key}[{n}]"
        item = _object(item, at)
        files.append(ConfigFile(_get(item, "path", at, (str,)), _get(item, "text", at, (str,))))
    return tuple(files)


def _strings(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = _list(data, key, where)
    if not all(isinstance(v, str) for v in value):
        raise _Bad(f"{where}.{key}", "expected a list of strings")
    return tuple(value)


def _fix(data: Any, where: str) -> TargetFix:
    data = _object(data, where)
    rows = []
    for n, row in enumerate(_list(data, "checks", where)):
        at = f"{where}.checks[{n}]"
        row = _object(row, at)
        after = _get(row, "after", at, (str, type(None)))
        rows.append(FixRow(
            check=_get(row, "check", at, (str,)),
            before=_enum(_get(row, "before", at, (str,)), Verdict, f"{at}.before"),
            after=None if after is None else _enum(after, Verdict, f"{at}.after"),
            addressed=_get(row, "addressed", at, (bool,)),
            summary=_get(row, "summary", at, (str,)),
            cause_gone=row.get("outcome") == "fixed in part",
        ))  # fmt: skip
    changes = []
    for n, change in enumerate(_list(data, "changes", where)):
        at = f"{where}.changes[{n}]"
        change = _object(change, at)
        changes.append(FixChange(
            file=_get(change, "file", at, (str,)),
            line=_get(change, "line", at, (int,)),
            knob=_get(change, "knob", at, (str,)),
            checks=_strings(change, "checks", at),
            why=_get(change, "why", at, (str,)),
            proven=_get(change, "proven", at, (bool, type(None))),
        ))  # fmt: skip
    refusals = []
    for n, refusal in enumerate(_list(data, "refusals", where)):
        at = f"{where}.refusals[{n}]"
        refusal = _object(refusal, at)
        refusals.append(FixRefusal(
            check=_get(refusal, "check", at, (str,)),
            reason=_get(refusal, "reason", at, (str,)),
            remedy=_get(refusal, "remedy", at, (str,)),
            proposal=_get(refusal, "proposal", at, (str, type(None))),
        ))  # fmt: skip
    after = data.get("after")
    return TargetFix(
        target=_get(data, "target", where, (str,)),
        status=_enum(_get(data, "status", where, (str,)), FixStatus, f"{where}.status"),
        summary=_get(data, "summary", where, (str,)),
        patch=_get(data, "patch", where, (str,)),
        files=_files(data, "files", where),
        changes=tuple(changes),
        refusals=tuple(refusals),
        rows=tuple(rows),
        after=None if after is None else _target(after, f"{where}.after"),
        written=_strings(data, "written", where),
        backups=_strings(data, "backups", where),
    )


def _target(data: Any, where: str) -> TargetResult:
    data = _object(data, where)
    files = _files(data, "config_files", where)
    results = _get(data, "results", where, (list,))
    run_dirs = data.get("run_dirs") or []
    if not isinstance(run_dirs, list) or not all(isinstance(d, str) for d in run_dirs):
        raise _Bad(f"{where}.run_dirs", "expected a list of paths")
    return TargetResult(
        id=_get(data, "id", where, (str,)),
        proxy=_get(data, "proxy", where, (str,)),
        setup=_get(data, "setup", where, (str,)),
        runtime=_get(data, "runtime", where, (str,)),
        proxy_version=_get(data, "proxy_version", where, (str, type(None))),
        status=_enum(_get(data, "status", where, (str,)), TargetStatus, f"{where}.status"),
        reason=_get(data, "reason", where, (str, type(None))),
        results=tuple(_result(r, f"{where}.results[{n}]") for n, r in enumerate(results)),
        config_files=tuple(files),
        run_dirs=tuple(run_dirs),
        tls=_get(data, "tls", where, (bool,)) if "tls" in data else False,
    )


def run_from_json(data: Any, source: Path | str = "<report>") -> RunResult:
    """The ``RunResult`` a JSON report describes; ``ReportError`` names what is wrong."""
    try:
        if not isinstance(data, Mapping):
            raise _Bad("", "expected a JSON object")
        tool = _get(data, "tool", "", (dict,))
        if tool.get("name") != "proxytest":
            raise _Bad("tool.name", f"{tool.get('name')!r}: not a proxytest report")
        targets = _get(data, "targets", "", (list,))
        shard = _get(data, "shard", "", (str,)) if "shard" in data else None
        everything = data.get("matrix_targets") or []
        if not isinstance(everything, list) or not all(isinstance(i, str) for i in everything):
            raise _Bad("matrix_targets", "expected a list of target ids")
        return RunResult(
            tool_version=str(tool.get("version", "?")),
            started_at=_get(data, "started_at", "", (str,)),
            duration_s=float(_get(data, "duration_s", "", (int, float))),
            targets=tuple(_target(t, f"targets[{n}]") for n, t in enumerate(targets)),
            interrupted=data.get("interrupted") is True,
            shard=shard,
            matrix_targets=tuple(everything),
            fixes=tuple(_fix(f, f"fixes[{n}]") for n, f in enumerate(_list(data, "fixes", ""))),
        )
    except _Bad as bad:
        where = f"{bad.where}: " if bad.where else ""
        raise ReportError(f"{where}{bad.problem}", file=source, fix=_FIX) from None


def read_report(path: Path) -> tuple[dict[str, Any], RunResult]:
    """Read and validate a JSON report file: its raw data and the run it describes."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError("no such file", file=path, fix=_FIX) from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReportError(f"cannot read it: {problem}", file=path, fix=_FIX) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"not valid JSON: {exc.msg} (column {exc.colno})", file=path, line=exc.lineno, fix=_FIX
        ) from None
    return data, run_from_json(data, path)
