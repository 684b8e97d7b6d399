"""Badges: shields.io-style flat SVGs and shields.io endpoint JSON files.

``badges/overall.svg`` (label ``proxytest``) and ``badges/<proxy>-<setup>.svg``
per target (label: the target id; the file name is the id with ``/`` as ``-``),
each with a ``.json`` twin for https://shields.io/badges/endpoint-badge:
``{"schemaVersion": 1, "label": ..., "message": ..., "color": ...}``.

The colours follow the exit-code rule (``CheckResult.as_expected``): a badge is
green or grey exactly when its target (or the run) would exit 0.

Per target (label: the target id), the first rule that matches:

1. the target could not run (binary, image or engine missing): ``not run``, red,
   or ``skipped``, lightgrey, when the matrix marks it optional (or
   ``--skip-missing``);
2. the target errored (could not start): ``error``, orange;
3. results the matrix does not expect: their counts, e.g. ``2 failed, 1 error,
   3 degraded`` (only the kinds present); red if any failed, else orange if
   any error, else yellow;
4. non-pass results, all expected by the matrix: ``as expected (2 known)``, green;
5. every check passed (skips aside): ``19 passed``, brightgreen;
6. every check skipped: ``skipped``, lightgrey.

Overall (label ``proxytest``): ``8/10 as expected`` counting the targets that
ran, plus ``, 2 not run`` for targets that could not run (red) and ``, 1
skipped`` for optional ones that could not; ``no target ran`` (red, or
lightgrey when every target was optional) when none did; ``nothing measured``
(lightgrey, and the run fails) when the targets that ran skipped every check.
Colour: brightgreen when the run is as expected with no known failures, green
when it is as expected thanks to the matrix's expectations, else the worst
colour among the targets (red, orange, yellow).

The SVG is drawn here rather than with a badge library: pybadges, the one
Python option, imports ``imghdr`` (deprecated, gone in Python 3.13) and
``pkg_resources``, and needs ``requests``. Text widths come from a table of
DejaVu Sans advance widths at 11 px (the fallback of shields' Verdana stack,
with nearly the same metrics); ``textLength`` makes any viewer's font fit.
"""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from ..results import RunResult, TargetResult, TargetStatus, Verdict

__all__ = [
    "COLORS",
    "Badge",
    "badge_file_stem",
    "endpoint_text",
    "overall_badge",
    "render_svg",
    "target_badge",
    "text_width",
]

COLORS = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "lightgrey": "#9f9f9f",
}
_SEVERITY = ["red", "orange", "yellow"]  # worst first

# Advance widths (px) of DejaVu Sans at 11 px for the printable ASCII characters.
_WIDTHS = (
    3.50, 4.41, 5.06, 9.22, 7.00, 10.45, 8.58, 3.02, 4.29, 4.29, 5.50, 9.22, 3.50, 3.97, 3.50, 3.71,
    7.00, 7.00, 7.00, 7.00, 7.00, 7.00, 7.00, 7.00, 7.00, 7.00, 3.71, 3.71, 9.22, 9.22, 9.22, 5.84,
    11.00, 7.52, 7.55, 7.68, 8.47, 6.95, 6.33, 8.52, 8.27, 3.24, 3.24, 7.21, 6.13, 9.49, 8.23, 8.66,
    6.63, 8.66, 7.64, 6.98, 6.72, 8.05, 7.52, 10.88, 7.54, 6.72, 7.54, 4.29, 3.71, 4.29, 9.22, 5.50,
    5.50, 6.74, 6.98, 6.05, 6.98, 6.77, 3.87, 6.98, 6.97, 3.06, 3.06, 6.37, 3.06, 10.72, 6.97, 6.73,
    6.98, 6.98, 4.52, 5.73, 4.31, 6.97, 6.51, 9.00, 6.51, 6.51, 5.77, 7.00, 3.71, 7.00, 9.22,
)  # fmt: skip


@dataclass(frozen=True)
class Badge:
    label: str
    message: str
    color: str  # a key of COLORS

    def endpoint_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": 1,
            "label": self.label,
            "message": self.message,
            "color": self.color,
        }


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def target_badge(target: TargetResult) -> Badge:
    label = target.id
    if target.status == TargetStatus.SKIPPED:
        return (
            Badge(label, "not run", "red")
            if target.not_run
            else Badge(label, "skipped", "lightgrey")
        )
    if target.status == TargetStatus.ERROR and not target.as_expected:
        return Badge(label, "error", "orange")
    unexpected = {v: 0 for v in (Verdict.FAIL, Verdict.ERROR, Verdict.DEGRADED)}
    known = passed = 0
    for result in target.results:
        if not result.as_expected:
            unexpected[result.verdict] += 1
        elif result.verdict not in (Verdict.PASS, Verdict.SKIP):
            known += 1
        elif result.verdict == Verdict.PASS:
            passed += 1
    fail, error, degraded = unexpected.values()
    if fail or error or degraded:
        parts = []
        if fail:
            parts.append(f"{fail} failed")
        if error:
            parts.append(_plural(error, "error", "errors"))
        if degraded:
            parts.append(f"{degraded} degraded")
        color = "red" if fail else "orange" if error else "yellow"
        return Badge(label, ", ".join(parts), color)
    if known:
        return Badge(label, f"as expected ({known} known)", "green")
    if passed:
        return Badge(label, f"{passed} passed", "brightgreen")
    return Badge(label, "skipped", "lightgrey")


def overall_badge(run: RunResult) -> Badge:
    ran = [t for t in run.targets if t.status != TargetStatus.SKIPPED]
    not_run = sum(1 for t in run.targets if t.not_run)
    skipped = len(run.targets) - len(ran) - not_run
    if not ran:
        return Badge("proxytest", "no target ran", "red" if not_run else "lightgrey")
    ok = sum(1 for t in ran if t.as_expected)
    message = f"{ok}/{len(ran)} as expected"
    if not_run:
        message += f", {not_run} not run"
    if skipped:
        message += f", {skipped} skipped"
    colors = [target_badge(t).color for t in run.targets if t.status != TargetStatus.SKIPPED]
    colors += ["red"] * bool(not_run)
    if not run.measured:  # every check skipped: nothing is known, so not green
        return Badge("proxytest", "nothing measured", "lightgrey")
    if run.as_expected:
        color = "brightgreen" if all(c == "brightgreen" for c in colors) else "green"
    else:
        color = next((c for c in _SEVERITY if c in colors), "red")
    return Badge("proxytest", message, color)


def badge_file_stem(target_id: str) -> str:
    """``nginx/default`` -> ``nginx-default``: safe as a file name and in a URL."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", target_id.replace("/", "-")).strip(".") or "target"


def text_width(text: str) -> int:
    """Rendered width in px at 11 px: DejaVu Sans metrics, 7 px for other characters."""
    total = 0.0
    for char in text:
        code = ord(char)
        total += _WIDTHS[code - 32] if 32 <= code < 127 else 7.0
    return round(total)


def render_svg(badge: Badge) -> str:
    """A flat badge in the shields.io layout: grey label on the left, coloured message."""
    label_text, message_text = text_width(badge.label), text_width(badge.message)
    label_w, message_w = label_text + 10, message_text + 10
    width = label_w + message_w
    title = f"{badge.label}: {badge.message}"
    # Ids unique per badge, so several badges inlined into one page do not clash.
    uid = hashlib.sha1(title.encode()).hexdigest()[:8]
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": str(width),
            "height": "20",
            "role": "img",
            "aria-label": title,
        },
    )
    ET.SubElement(svg, "title").text = title
    gradient = ET.SubElement(svg, "linearGradient", {"id": f"s{uid}", "x2": "0", "y2": "100%"})
    ET.SubElement(gradient, "stop", {"offset": "0", "stop-color": "#bbb", "stop-opacity": ".1"})
    ET.SubElement(gradient, "stop", {"offset": "1", "stop-opacity": ".1"})
    clip = ET.SubElement(svg, "clipPath", {"id": f"r{uid}"})
    ET.SubElement(clip, "rect", {"width": str(width), "height": "20", "rx": "3", "fill": "#fff"})
    shapes = ET.SubElement(svg, "g", {"clip-path": f"url(#r{uid})"})
    ET.SubElement(shapes, "rect", {"width": str(label_w), "height": "20", "fill": "#555"})
    ET.SubElement(
        shapes,
        "rect",
        {
            "x": str(label_w),
            "width": str(message_w),
            "height": "20",
            "fill": COLORS[badge.color],
        },
    )
    ET.SubElement(shapes, "rect", {"width": str(width), "height": "20", "fill": f"url(#s{uid})"})
    text = ET.SubElement(
        svg,
        "g",
        {
            "fill": "#fff",
            "text-anchor": "middle",
            "font-family": "Verdana,Geneva,DejaVu Sans,sans-serif",
            "text-rendering": "geometricPrecision",
            "font-size": "110",
        },
    )
    # Coordinates are ×10 under scale(.1), as shields does, for sub-pixel placement.
    for content, center, length in (
        (badge.label, label_w / 2 + 1, label_text),
        (badge.message, label_w + message_w / 2 - 1, message_text),
    ):
        x, size = str(round(center * 10)), str(length * 10)
        shadow = {
            "aria-hidden": "true",
            "x": x,
            "y": "150",
            "fill": "#010101",
            "fill-opacity": ".3",
            "transform": "scale(.1)",
            "textLength": size,
        }
        ET.SubElement(text, "text", shadow).text = content
        front = {"x": x, "y": "140", "transform": "scale(.1)", "fill": "#fff", "textLength": size}
        ET.SubElement(text, "text", front).text = content
    return ET.tostring(svg, encoding="unicode") + "\n"


def endpoint_text(badge: Badge) -> str:
    return json.dumps(badge.endpoint_json(), ensure_ascii=False) + "\n"
