"""The supervisor's pid file (`studies/<name>/supervisor.json`): read by status and stop without
importing the scheduler."""

from __future__ import annotations

import json
from pathlib import Path


def read_supervisor(info: Path) -> dict | None:
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None
