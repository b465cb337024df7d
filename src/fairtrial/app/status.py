"""Status as machines poll it (`fairtrial status --json`): derived from the store, the artifacts
and process liveness. Imports neither typer, rich nor pydantic, so the console script answers it
without loading the CLI (fairtrial.entry)."""

from __future__ import annotations

from typing import Any

from fairtrial.errors import UserError
from fairtrial.status import study_status
from fairtrial.store.fastread import reader_for
from fairtrial.workspace import Workspace


def statuses(workspace: str | None, study: str | None, verify: bool) -> dict[str, Any]:
    """{"studies": [status dict, ...]} of one study of the workspace, or of all (study=None).
    UserError for a study the workspace does not know."""
    ws = Workspace.find(workspace).ensure()
    store = reader_for(ws.db_url)
    if store is None:  # another database, or none yet: the SQLAlchemy store
        from fairtrial.store.db import Store

        store = Store(ws.db_url)
    if study is None:
        names = [s["name"] for s in store.list_studies()]
    elif store.get_study(study):
        names = [study]
    else:
        known = [s["name"] for s in store.list_studies()]
        raise UserError(f'unknown study "{study}"; known in this workspace: '
                        f'{", ".join(known) or "none"}')
    return {"studies": [study_status(ws, store, n, verify).to_dict() for n in names]}


def store_label(workspace: str | None) -> str:
    """The workspace's record store for a message: a SQLite file's path, or "<scheme> store"."""
    url = Workspace.find(workspace).db_url
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else url.split("://")[0] + " store"
