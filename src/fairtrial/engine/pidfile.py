"""The supervisor's pid file (`studies/<name>/supervisor.json`: pid, host, pid_started, started_at):
read by status and stop without importing the scheduler. Whether its process lives:
`fairtrial.base.process.alive(pid, pid_started)`."""

from __future__ import annotations

import json
from pathlib import Path


def read_supervisor(info: Path) -> dict | None:
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None
