"""A read-only view of a SQLite record store with the same read methods status uses
(`get_cells`, `status_rows`, `get_study`, `list_studies`), through the standard library's sqlite3.

Written by hand, next to the SQLAlchemy store, for one reason: importing SQLAlchemy costs about as
much as answering `fairtrial status --json` on 10,000 stage runs, and machines poll that command.
It reads the tables the SQLAlchemy store (db.py) defines, in WAL mode, and never writes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

STATUS_COLUMNS = ("key", "recipe", "stage", "state", "study", "attempts", "pid", "host",
                  "started_at", "heartbeat_at", "duration_s", "progress_done", "progress_total",
                  "progress_unit", "rate", "message", "error", "adjustments")


def reader_for(url: str):
    """A SqliteReader for an existing sqlite:/// database, else None (use the Store)."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url[len("sqlite:///"):])
    if not path.exists():
        return None
    return SqliteReader(path)


class SqliteReader:
    def __init__(self, path: Path):
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            self.con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # a read-only folder (an archived workspace, a read-only mount): SQLite in WAL mode
            # cannot make its shared-memory file there even to read. Nothing can be writing to
            # such a workspace, so the database file is read as immutable.
            self.con.close()
            self.con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, timeout=30)

    def get_cells(self, study: str) -> list[dict]:
        rows = self.con.execute("SELECT arm, replicate, stage, key FROM cells WHERE study = ?",
                                (study,)).fetchall()
        return [{"study": study, "arm": a, "replicate": r, "stage": s, "key": k}
                for a, r, s, k in rows]

    def status_rows(self) -> dict[str, dict]:
        rows = self.con.execute(f"SELECT {', '.join(STATUS_COLUMNS)} FROM stage_runs").fetchall()
        out = {}
        for r in rows:
            d = dict(zip(STATUS_COLUMNS, r))
            adj = d["adjustments"]
            d["adjustments"] = json.loads(adj) if adj and adj not in ("null", "[]") else None
            out[d["key"]] = d
        return out

    def _study_rows(self, where: str = "", args: tuple = ()) -> list[dict]:
        cols = ("name", "path", "recipe", "spec_digest", "spec", "updated_at")
        rows = self.con.execute(f"SELECT {', '.join(cols)} FROM studies {where} ORDER BY name",
                                args).fetchall()
        out = []
        for r in rows:
            d = dict(zip(cols, r))
            d["spec"] = json.loads(d["spec"]) if d["spec"] else None
            out.append(d)
        return out

    def get_study(self, name: str) -> dict | None:
        rows = self._study_rows("WHERE name = ?", (name,))
        return rows[0] if rows else None

    def list_studies(self) -> list[dict]:
        return self._study_rows()
