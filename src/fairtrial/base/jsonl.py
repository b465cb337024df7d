"""JSON Lines files, one object per line (UTF-8, non-ASCII kept as is): the one reader and writer
the recipes use for their artifacts (items, prompts, outputs, references)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def read_jsonl(path: str | Path) -> list[Any]:
    """Every object of the file; blank lines are skipped. A bad line raises ValueError naming
    the file and line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {n}: not JSON ({e.msg})") from None
    return out
