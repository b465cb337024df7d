"""The supervisor's pid file (`studies/<name>/supervisor.json`): read by status and stop without
importing the scheduler; and the liveness of a process named by pid and start time."""

from __future__ import annotations

import json
from pathlib import Path


def read_supervisor(info: Path) -> dict | None:
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None


def proc_alive(pid: int | None, started: float | None) -> bool:
    """Whether process `pid` of this host lives and is the one that started at `started` (a
    recycled pid is another process: its start time differs)."""
    if not pid:
        return False
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
