"""Reports render a RunResult: console grid, JSON (the DESIGN.md contract)."""

from .json_report import write_json

__all__ = ["write_json"]
