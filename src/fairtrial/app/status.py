"""Status of studies (`fairtrial status`), derived from the store, the artifacts and process
liveness. Only reads.

`statuses` is the machines' path (`status --json`): it imports neither typer, rich nor pydantic,
so the console script answers it without loading the CLI (fairtrial.entry). `status` is the
CLI's: it resolves a study file too and returns a query that `--watch` reads again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.app.resolve import open_store, open_workspace, resolve_study
from fairtrial.errors import UserError
from fairtrial.status import study_status
from fairtrial.store.fastread import reader_for
from fairtrial.workspace import Workspace

if TYPE_CHECKING:
    from fairtrial.status import StudyStatus


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


@dataclass
class StatusQuery:
    """The studies `status` shows; `read()` derives their status afresh (for --watch, again)."""
    ws: Workspace
    store: Any
    names: list[str]

    def read(self, verify: bool = False) -> list[StudyStatus]:
        return [study_status(self.ws, self.store, n, verify) for n in self.names]


def status(workspace: str | Path | None, study: str | None = None) -> StatusQuery:
    """The studies to show: one (a name or a study file) or all of the workspace. Only reads;
    a read-only workspace is read without SQLAlchemy's write access."""
    ws = open_workspace(workspace)
    try:
        store = open_store(ws)
    except Exception:
        store = reader_for(ws.db_url)
        if store is None:
            raise
    return StatusQuery(ws=ws, store=store, names=resolve_study(study, store))
