"""What an executor runs (a `Task`: one attempt of one stage run) and what comes back (a `Result`).

Both are plain data that cross process and node boundaries (a pipe to a local worker, Ray's
object store to a Ray task): `to_dict`/`from_dict` are the wire form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fairtrial.recipes.api import Resources

OUTCOMES = ("done", "failed", "transient", "oom")


@dataclass
class Task:
    key: str
    recipe: str
    stage: str
    study: str
    params: dict[str, Any]                 # effective params (after any OOM back-off)
    declared_params: dict[str, Any]
    seed: int | None
    needs: dict[str, str]                  # upstream stage -> key
    inputs: dict[str, str]                 # upstream stage -> artifact folder
    input_files: dict[str, Any]
    attempt: int
    resources: Resources = field(default_factory=Resources)
    adjustments: list = field(default_factory=list)
    lease_token: str | None = None         # the supervisor's lease: the task ends if it is lost
    device: str = "cpu"
    cpus: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if isinstance(d.get("resources"), dict):
            d["resources"] = Resources(**d["resources"])
        return cls(**d)


@dataclass
class Result:
    key: str
    outcome: str                           # done | failed | transient | oom
    started: float
    ended: float
    error: str | None = None
    summary: dict | None = None
    files: int = 0
    committed: bool = True                 # False: the key was already committed; ours discarded

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
