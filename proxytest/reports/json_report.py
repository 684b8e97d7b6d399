"""The JSON report: ``RunResult.to_json()`` written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from ..results import RunResult
from .files import write_text_atomic


def write_json(result: RunResult, path: Path) -> None:
    write_text_atomic(path, json.dumps(result.to_json(), indent=2) + "\n")
