"""`load_spec`: read a study file (TOML) and validate it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from fairtrial.errors import UserError
from fairtrial.spec.errors import SpecError
from fairtrial.spec.study import Spec
from fairtrial.spec.validate import validate


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such study file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give the study file (TOML) itself")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:  # unreadable (permissions), a special file, an I/O error
        raise UserError(f"{path}: cannot read the study file: {e.strerror or e}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = _toml_error_line(e)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise SpecError(path, [(line, "", f"malformed TOML: {msg}")]) from None
    return validate(raw, path, text)


def _toml_error_line(e: tomllib.TOMLDecodeError) -> int | None:
    m = re.search(r"line (\d+)", str(e))
    return int(m.group(1)) if m else None
