"""Reports render a RunResult: console grid, JSON (the contract in docs/architecture.md),
and the CI report directory (``write_reports``: JSON, JUnit XML, Markdown, HTML, badges)."""

from .files import write_reports
from .json_report import write_json
from .load import read_report, run_from_json

__all__ = ["read_report", "run_from_json", "write_json", "write_reports"]
