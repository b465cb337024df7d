"""Where a workspace keeps things. One workspace holds many studies; stage runs with equal keys are
shared between them.

Resolution: `--workspace` > $FAIRTRIAL_WORKSPACE > `.fairtrial` in the current directory.
The record store is SQLite at `<workspace>/fairtrial.db` unless $FAIRTRIAL_DB_URL gives any
SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def find(cls, explicit: str | Path | None = None) -> "Workspace":
        root = Path(explicit or os.environ.get("FAIRTRIAL_WORKSPACE") or ".fairtrial")
        return cls(root.resolve())

    def ensure(self) -> "Workspace":
        for d in (self.root, self.artifacts, self.tmp, self.checkpoints, self.logs, self.locks,
                  self.studies):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def db_url(self) -> str:
        return os.environ.get("FAIRTRIAL_DB_URL") or f"sqlite:///{self.root / 'fairtrial.db'}"

    artifacts = property(lambda self: self.root / "artifacts")
    tmp = property(lambda self: self.root / "tmp")
    checkpoints = property(lambda self: self.root / "checkpoints")
    logs = property(lambda self: self.root / "logs")
    locks = property(lambda self: self.root / "locks")
    studies = property(lambda self: self.root / "studies")
    corrupt = property(lambda self: self.root / "corrupt")

    def artifact(self, key: str) -> Path:
        return self.artifacts / key[:2] / key

    def checkpoint(self, key: str) -> Path:
        return self.checkpoints / key

    def log(self, key: str) -> Path:
        return self.logs / f"{key}.log"

    def study_dir(self, name: str) -> Path:
        return self.studies / name
