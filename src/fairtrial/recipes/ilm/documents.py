"""The ilm recipe's documents: read by the data params, written and read back as split files.

The prepare artifact holds {train,valid,test}.jsonl (rows: id, level, text, strata) for the "all"
subset and for each level. Reading and splitting are fairtrial.data's (readers, split); this
module only maps the recipe's data params onto them. Library code: raises ValueError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fairtrial.data import readers as R
from fairtrial.recipes.api import StageError
from fairtrial.recipes.ilm import params as P


def data_path(params: dict) -> Path:
    """The data params' source resolved to a path (a data set name through fairtrial.data)."""
    dp = P.DataParams.model_validate(params["data"])
    src = Path(dp.source).expanduser()
    if src.exists():
        return src
    from fairtrial.data.registry import resolve
    from fairtrial.errors import UserError

    try:
        return resolve(dp.source)
    except UserError as e:
        raise StageError(str(e)) from None


def _format(dp: P.DataParams, path: Path) -> str:
    if dp.format != "auto":
        return dp.format
    name = dp.source.lower()
    if name in ("cefr-sp", "onestopenglish", "efcamdat"):
        return name
    if path.is_dir():
        if (path / "Texts-SeparatedByReadingLevel").is_dir() or any(
                (path / f"{lv}-Txt").is_dir() for lv in R.ONESTOP_LEVELS):
            return "onestopenglish"
        if any(p.suffix == ".tsv" for p in path.iterdir()):
            return "cefr-sp"
        return "text-folder"
    if path.suffix.lower() == ".csv":
        with open(path, "rb") as f:
            head = f.readline().decode("utf-8", "replace").lower()
        if "writing_id" in head and "cefr_level" in head:
            return "efcamdat"
    return "table"


def load_documents(dp: P.DataParams, path: Path) -> list[R.Document]:
    fmt = _format(dp, path)
    if fmt == "cefr-sp":
        return R.read_cefr_sp(path, rule=dp.level_rule)
    if fmt == "onestopenglish":
        return R.read_onestopenglish(path)
    if fmt == "efcamdat":
        return R.read_efcamdat(path)
    if fmt == "table":
        return R.read_table(path, dp.text_column, dp.level_column, dp.strata_columns,
                            dp.id_column, dp.levels)
    return R.read_text_folder(path, dp.level_pattern, levels=dp.levels)


def input_files(params: dict) -> list[Path]:
    """The planner's hook: the data path, whose content digest enters the prepare key."""
    return [data_path(params)]


def length_stats(texts: list[str]) -> dict:
    if not texts:
        return {"n": 0}
    n = np.asarray([len(t) for t in texts])
    return {"n": int(n.size), "chars_mean": round(float(n.mean()), 1),
            "chars_median": float(np.median(n)), "chars_min": int(n.min()), "chars_max": int(n.max())}


def write_split(path: Path, docs: list[R.Document]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "level": d.level, "text": d.text,
                                "strata": d.strata}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_split(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def train_texts(prepare: Path, train_level: Any) -> list[str]:
    """Texts of the training split restricted to the arm's level(s), from the prepare artifact."""
    path = Path(prepare) / "train.jsonl"
    if not path.exists():
        raise ValueError(f"{path} does not exist: the prepare artifact should hold the training "
                         f"split as train.jsonl (rows with id, level, text)")
    levels = None if train_level in (None, "all") else (
        {str(train_level)} if isinstance(train_level, str) else {str(x) for x in train_level})
    texts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, level = row["text"], row.get("level")
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: expected a JSON object with id, level, text ({e})"
                                 ) from None
            if levels is None or str(level) in levels:
                texts.append(text)
    return texts
