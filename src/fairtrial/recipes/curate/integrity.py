"""The curate recipe's integrity hook (`Recipe.integrity`): what the report's train/eval overlap
check needs, read from one arm's finished collect and select artifacts.

  train_texts  the prompts of the arm's training set (params.train_set of select's sets)
  eval_texts   {evaluation source name: {item id: prompt}} from collect's eval.parquet

Prompts, because the dedup stage compares prompts: an evaluation question asked in training is
the leak, whatever answer went with it. Pure over files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from fairtrial.recipes.curate.params import CurateParams


def integrity(paths: dict[str, Path], params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    col = paths.get("collect")
    if col is not None and (Path(col) / "eval.parquet").exists():
        t = pq.read_table(Path(col) / "eval.parquet", columns=["id", "source", "prompt"])
        ev: dict[str, dict[str, str]] = {}
        for i, s, p in zip(t["id"].to_pylist(), t["source"].to_pylist(), t["prompt"].to_pylist()):
            ev.setdefault(s, {})[i] = p
        out["eval_texts"] = ev
    sel = paths.get("select")
    if sel is not None:
        f = Path(sel) / "arms" / f"{CurateParams.model_validate(params).train_set}.parquet"
        if f.exists():
            out["train_texts"] = pq.read_table(f, columns=["prompt"])["prompt"].to_pylist()
    return out
