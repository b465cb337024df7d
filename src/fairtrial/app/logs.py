"""A stage run's log (`fairtrial logs`)."""

from __future__ import annotations

from pathlib import Path

from fairtrial.app.resolve import find_key, open_store, open_workspace
from fairtrial.errors import UserError


def stage_log(ref: str, study: str | None, workspace: str | Path | None) -> Path:
    """The log file of a stage run (see `resolve.find_key` for `ref`); UserError when it has none
    yet."""
    ws = open_workspace(workspace)
    store = open_store(ws)
    key = find_key(ref, study, ws, store)
    path = ws.log(key)
    if not path.exists():
        raise UserError(f"stage run {key[:12]} has no log yet (it has not started)")
    return path
