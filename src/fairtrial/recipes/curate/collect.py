"""collect: read every declared source (and evaluation set) into one table.

Columns of `samples.parquet` / `eval.parquet`: id (unique in the table: the reader's id, which
starts with the source's name), source, prompt, response, system, turns (JSON), file, line, meta
(JSON). The readers are fairtrial.data.instructions'; malformed rows are fatal or skipped as the
study says (`on_error`), and the skipped ones are counted with file, line and reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from fairtrial.data import resolve
from fairtrial.data.instructions import InstructionSet, read_instructions
from fairtrial.errors import UserError

COLUMNS = ("id", "source", "prompt", "response", "system", "turns", "file", "line", "meta")


def resolve_path(path: str) -> Path:
    """A path as is when it exists; else "<data set name>/<path inside it>" through
    fairtrial.data.resolve (so "gsm8k/train.jsonl" finds shared/data/gsm8k/train.jsonl)."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    head, _, rest = str(path).partition("/")
    if p.is_absolute() or not head or head in (".", ".."):
        raise ValueError(f"{path}: no such file or folder")
    try:
        root = resolve(head)
    except UserError as e:  # not a data set either
        raise ValueError(f"{path}: no such file or folder, and {e}") from None
    full = root / rest if rest else root
    if not full.exists():
        raise ValueError(f"{path}: data set {head!r} is at {root}, but it has no {rest!r}")
    return full


def read_source(src: Any, on_error: str) -> InstructionSet:
    """One SourceParams -> its rows, ids prefixed with the source's name."""
    fields = {k: v for k, v in src.fields().items() if v is not None}
    if src.format == "instruction" and "input_field" not in fields and "prompt_field" in fields:
        fields["input_field"] = None  # a named prompt field without an input field: no input
    got = read_instructions(resolve_path(src.path), src.format, on_error=on_error,
                            source=src.name, **fields)
    if src.limit is not None:
        got.rows = got.rows[: src.limit]
    return got


def to_table(rows) -> pa.Table:
    recs = [r.record() for r in rows]
    return pa.table({c: [r[c] for r in recs] for c in COLUMNS},
                    schema=pa.schema([(c, pa.int64() if c == "line" else pa.string()) for c in COLUMNS]))


def duplicate_ids(rows) -> list[str]:
    seen: set[str] = set()
    return sorted({r.id for r in rows if r.id in seen or seen.add(r.id)})  # type: ignore[func-returns-value]


def input_files(params: dict) -> list[Path]:
    """The planner's hook: every source and evaluation file, whose content digests enter the
    collect key. A missing one is bad input, reported before any compute."""
    from fairtrial.recipes.curate.params import CurateParams

    p = CurateParams.model_validate(params)
    out = []
    for kind, srcs in (("sources", p.sources), ("eval_sets", p.eval_sets)):
        for i, s in enumerate(srcs):
            try:
                out.append(resolve_path(s.path))
            except ValueError as e:
                raise UserError(f"params.{kind}[{i}] ({s.name}): {e}") from None
    return out
