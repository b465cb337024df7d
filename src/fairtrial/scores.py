"""Item scores: per-item endpoint values, the raw material of every comparison.

An evaluation stage writes `item_scores.parquet` into its artifact folder with `write_item_scores`.
The file is arm-agnostic (an artifact is content-addressed and may serve several arms); the
analysis adds the `arm` and `replicate` columns from the study's records when it reads the files.

Columns written by stages:
  item_id (string)        the test document / window / prompt id, stable across arms
  eval_set (string)       name of the eval set (e.g. "A1" test set)
  eval_set_digest (string) sha256 of the eval set's canonical content: equal digests = same items;
                          "undeclared" (UNDECLARED) for imported scores whose file gave none: they
                          claim only which item ids they scored
  metric (string)         a metric the recipe declares
  value (float64)         the per-item value
  system (string)         "model" for the trained model, or a trivial baseline's name
                          ("unigram", "copy_last", ...), which the analysis shows as "baseline:<name>"
  item_digest (string, optional) a digest of one item's content: the same item id with two
                          different item digests is an eval-set mismatch
  any extra columns       (strings or numbers), kept as they are
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

FILENAME = "item_scores.parquet"
REQUIRED = ("item_id", "eval_set", "eval_set_digest", "metric", "value", "system")
UNDECLARED = "undeclared"
"""eval_set_digest of imported rows whose file declares no digest."""


def eval_set_digest(item_ids: Iterable[str], contents: Iterable[Any] | None = None) -> str:
    """Digest of an eval set: its item ids in order, and optionally their contents."""
    h = hashlib.sha256()
    if contents is None:
        for i in item_ids:
            h.update(str(i).encode())
            h.update(b"\0")
    else:
        for i, c in zip(item_ids, contents, strict=True):
            h.update(str(i).encode())
            h.update(b"\0")
            h.update(json.dumps(c, sort_keys=True, default=str).encode())
            h.update(b"\1")
    return h.hexdigest()


def write_item_scores(folder: Path, rows: Iterable[Mapping[str, Any]] | Mapping[str, list]) -> Path:
    """Write item scores to `folder/item_scores.parquet`.

    `rows` is either a list of dicts (one per item x metric) or a dict of equal-length columns.
    `system` defaults to "model". Raises ValueError on missing columns or non-finite values.
    """
    if isinstance(rows, Mapping):
        table = pa.table(dict(rows))
    else:
        rows = list(rows)
        if not rows:
            raise ValueError("no item scores to write")
        # from_pylist takes its columns from the first row: give every row every key
        keys: dict[str, None] = {}
        for r in rows:
            keys.update(dict.fromkeys(r))
        rows = [{k: r.get(k, "model" if k == "system" else None) for k in keys} for r in rows]
        table = pa.Table.from_pylist(rows)
    if "system" not in table.column_names:
        table = table.append_column("system", pa.array(["model"] * table.num_rows, pa.string()))
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(f"item scores lack columns {missing}; required: {list(REQUIRED)}")
    for c in ("item_id", "eval_set", "eval_set_digest", "metric", "system"):
        table = table.set_column(table.column_names.index(c), c, table[c].cast(pa.string()))
    table = table.set_column(table.column_names.index("value"), "value",
                             table["value"].cast(pa.float64()))
    import numpy as np

    vals = table["value"].to_numpy(zero_copy_only=False)
    if not np.all(np.isfinite(vals)):
        bad = int((~np.isfinite(vals)).sum())
        raise ValueError(f"{bad} item score values are NaN or infinite")
    path = Path(folder) / FILENAME
    pq.write_table(table, path)
    return path


def read_item_scores(path: Path) -> pa.Table:
    return pq.read_table(path)
