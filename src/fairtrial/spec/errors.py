"""Errors of a study file: `SpecError` (all of a file's errors at once, `file:line: loc: message`)
and pydantic's errors turned into messages a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fairtrial.errors import UserError


class SpecError(UserError):
    """One or more errors in a study file; `errors` holds (line, loc, message) triples."""

    def __init__(self, path: Path, errors: list[tuple[int | None, str, str]]):
        self.path = path
        self.errors = errors
        lines = []
        for line, loc, msg in errors:
            where = f"{path.name}:{line}" if line else f"{path.name}"
            lines.append(f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}")
        # a bad shared param fails every arm the same way: say it once
        super().__init__("\n".join(dict.fromkeys(lines)))


def pydantic_errors(err: ValidationError, model: type[BaseModel] | None = None):
    """(loc, message) pairs with messages a user can act on."""
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            known = _known_keys(model, loc[:-1]) if model else []
            msg = "unknown key" + (f"; known: {', '.join(known)}" if known else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {e['input']!r})"
        out.append((loc, msg))
    return out


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) pydantic model at `loc`."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cur, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        cur = _model_in(ann)
        if cur is None:
            return []
    return sorted(getattr(cur, "model_fields", {}).keys())


def _model_in(ann) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in getattr(ann, "__args__", ()) or ():
        m = _model_in(a)
        if m is not None:
            return m
    return None
