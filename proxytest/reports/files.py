"""The report directory for CI: ``write_reports(run, directory)``.

Six kinds of files, all rendered from the run's JSON form (a live run is
turned into JSON first), so a saved ``results.json`` redraws the same files
with ``proxytest report results.json --report-dir DIR``::

    DIR/results.json        RunResult.to_json(): the JSON contract (docs/architecture.md)
    DIR/junit.xml           one testsuite per setup, one testcase per check
    DIR/summary.md          grid, legend, overall line, what did not pass
    DIR/report.html         one self-contained page with details and charts
    DIR/badges/overall.svg  shields-style badges, and .json endpoint twins
    DIR/badges/<proxy>-<setup>.svg

Every file is written atomically (a temp file, then a rename). When
``GITHUB_STEP_SUMMARY`` is set, summary.md is appended to it as well.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..results import RunResult
from .badges import badge_file_stem, endpoint_text, overall_badge, render_svg, target_badge
from .html import render_html
from .junit import render_junit
from .load import run_from_json
from .markdown import append_step_summary, render_markdown

__all__ = ["write_reports", "write_text_atomic"]


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".proxytest-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(run: RunResult | Mapping[str, Any], directory: Path) -> list[Path]:
    """Write every report file of ``run`` into ``directory``; return their paths.

    ``run`` is a ``RunResult`` or its JSON form (e.g. a loaded results.json);
    a malformed JSON form raises ``ReportError`` naming the bad key.
    """
    data = run.to_json() if isinstance(run, RunResult) else dict(run)
    result = run_from_json(data, "results.json")
    directory = Path(directory)
    written: list[tuple[Path, str]] = [
        (directory / "results.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n"),
        (directory / "junit.xml", render_junit(result)),
        (directory / "summary.md", render_markdown(result)),
        (directory / "report.html", render_html(result)),
    ]
    badges = directory / "badges"
    overall = overall_badge(result)
    written += [
        (badges / "overall.svg", render_svg(overall)),
        (badges / "overall.json", endpoint_text(overall)),
    ]
    stems: set[str] = {"overall"}
    for target in result.targets:
        stem = badge_file_stem(target.id)
        n = 2
        while stem in stems:  # two ids that differ only in unsafe characters
            stem = f"{badge_file_stem(target.id)}-{n}"
            n += 1
        stems.add(stem)
        badge = target_badge(target)
        written += [
            (badges / f"{stem}.svg", render_svg(badge)),
            (badges / f"{stem}.json", endpoint_text(badge)),
        ]
    for path, text in written:
        write_text_atomic(path, text)
    summary = next(text for path, text in written if path.name == "summary.md")
    append_step_summary(summary)
    return [path for path, _ in written]
