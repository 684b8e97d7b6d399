"""junit.xml: the run as JUnit XML, the test-report format every CI reads.

One ``<testsuite>`` per target (name: the target id), one ``<testcase>`` per
check (classname ``proxytest.<proxy>.<setup>``, name: the check id, time: its
duration). Verdicts map to JUnit states like this:

==========================  =================================================
verdict                     JUnit
==========================  =================================================
pass                        passed
fail, degraded              ``<failure message=summary>``: summary and hint
error                       ``<error message=summary>``
skip                        ``<skipped message=reason>``
non-pass the matrix         ``<skipped message="expected fail: …">`` — JUnit has
expects                     no expected-failure state, and it must not fail CI
==========================  =================================================

A target that was skipped or errored carries its reason in each of its checks.
Each testcase has ``<properties>``: its metrics, then verdict, expected,
proxy_version and runtime. The layout follows the common JUnit schema that
Jenkins, GitLab and GitHub test reporters read (testsuites > testsuite >
properties, testcase > properties, failure | error | skipped, system-out).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from ..results import CheckResult, RunResult, TargetResult, TargetStatus, Verdict

__all__ = ["render_junit"]

# Characters XML 1.0 cannot carry at all (ANSI escapes from proxy logs, NULs).
_INVALID_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _time(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"


def classname(target: TargetResult) -> str:
    """``nginx/default`` -> ``proxytest.nginx.default`` (dots inside a name become _)."""
    parts = [re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in target.id.split("/")]
    return ".".join(["proxytest", *parts])


def _kind(result: CheckResult) -> str | None:
    """The JUnit element of a testcase's outcome: None when it passed."""
    if result.verdict == Verdict.PASS:
        return None
    if result.not_run:  # nothing was measured: CI must not count it as skipped
        return "error"
    if result.as_expected:  # skip, or a documented failure: JUnit has no xfail
        return "skipped"
    return "error" if result.verdict == Verdict.ERROR else "failure"


def _testcase(result: CheckResult, target: TargetResult) -> tuple[ET.Element, str | None]:
    case = ET.Element(
        "testcase",
        {"name": result.check, "classname": classname(target), "time": _time(result.duration_s)},
    )
    properties = ET.SubElement(case, "properties")
    values: list[tuple[str, Any]] = [*result.metrics.items()]
    values += [
        ("verdict", result.verdict.value),
        ("expected", result.expected.value if result.expected else None),
        ("proxy_version", target.proxy_version),
        ("runtime", target.runtime),
    ]
    for name, value in values:
        attributes = {"name": _clean(name), "value": _clean(_value(value))}
        ET.SubElement(properties, "property", attributes)
    kind = _kind(result)
    if kind is None:
        if result.unexpected_pass:
            out = ET.SubElement(case, "system-out")
            out.text = f"passes, but the matrix expects {result.expected}: update the matrix entry"
        return case, None
    message, body = result.summary, [result.summary]
    if target.status == TargetStatus.ERROR and target.reason:
        message, body = target.reason.splitlines()[0], [target.reason]
    if kind == "skipped" and result.verdict != Verdict.SKIP:
        verdict = result.verdict.value
        message = f"expected {verdict}: {message}"
        body = [
            f"{verdict} (expected by the matrix): {body[0]}",
            "JUnit has no expected-failure state: a documented failure is reported as skipped.",
        ]
    if result.hint:
        body.append(f"fix: {result.hint}")
    attributes = {"message": _clean(message)}
    if kind != "skipped":
        attributes["type"] = result.verdict.value
    element = ET.SubElement(case, kind, attributes)
    element.text = _clean("\n".join(body))
    return case, kind


def render_junit(run: RunResult) -> str:
    root = ET.Element("testsuites", {"name": "proxytest"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for target in run.targets:
        suite = ET.SubElement(root, "testsuite", {"name": _clean(target.id)})
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("proxy", target.proxy),
            ("setup", target.setup),
            ("runtime", target.runtime),
            ("proxy_version", target.proxy_version),
            ("status", target.status.value),
            ("reason", target.reason),
        ):
            ET.SubElement(properties, "property", {"name": name, "value": _clean(_value(value))})
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        time = 0.0
        for result in target.results:
            case, kind = _testcase(result, target)
            suite.append(case)
            counts["tests"] += 1
            time += result.duration_s
            if kind == "failure":
                counts["failures"] += 1
            elif kind == "error":
                counts["errors"] += 1
            elif kind == "skipped":
                counts["skipped"] += 1
        for key, count in counts.items():
            suite.set(key, str(count))
            totals[key] += count
        suite.set("time", _time(time))
        suite.set("timestamp", run.started_at)
        if target.status != TargetStatus.OK and target.reason:
            err = ET.SubElement(suite, "system-err")
            err.text = _clean(f"{target.id} {target.status.value}: {target.reason}")
    for key, total in totals.items():
        root.set(key, str(total))
    root.set("time", _time(run.duration_s))
    root.set("timestamp", run.started_at)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
