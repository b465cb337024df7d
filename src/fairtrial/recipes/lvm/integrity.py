"""The lvm recipe's integrity hook (`Recipe.integrity`): what the report's train/eval overlap and
split reproducibility checks need, read from one arm's finished prepare and windows artifacts.
Pure over files; it reads what the stages already write and changes none of it.

  train_texts  one text per training window of the arm's train_fraction: its k context units and
               its target unit, one per line
  eval_texts   {"test": {window id -> the same text of that test window}}, keyed like the
               evaluate stage's item scores ("<doc_id>#<target position>")
  splits       "document split": documents.parquet's split and training order re-derived from
               split.seed and the stored document keys and groups with prepare's own
               split_joined; "windows (train_fraction f)": every split's windows re-derived
               from the documents with the windows stage's own nested_subset and build_windows

Why a window (context + target) and not the target sentence alone: an item is "predict this unit
after this context", so it has leaked when the model trained on that same context -> target pair
(a test document duplicated into training). A target sentence that recurs on its own is mostly
boilerplate ("1.", a byline) and says nothing about memorisation: on OneStopEnglish (seed 0, k = 5)
3 of 3367 test targets recur verbatim in training, all "1.", while no test window does. The
windows stage already counts recurring sentences (counts.json, test_units_seen_in_train).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from fairtrial.data.split import nested_subset
from fairtrial.recipes.lvm.corpus import split_documents
from fairtrial.recipes.lvm.params import LvmParams
from fairtrial.recipes.lvm.windows import build_windows

EVAL_SET = "test"   # the eval set name the evaluate stage writes
SPLITS = ("train", "valid", "test")
SHOW = 3            # mismatching ids named in a detail message


def integrity(paths: dict[str, Path], params: dict[str, Any]) -> dict[str, Any]:
    """The hook: {"train_texts", "eval_texts", "splits"}, each only when its artifacts exist."""
    out: dict[str, Any] = {}
    prep = paths.get("prepare")
    if prep is None:
        return out
    prep, p = Path(prep), LvmParams.model_validate(params)
    docs = pq.read_table(prep / "documents.parquet").to_pylist()
    splits = [document_split(prep, docs, p)]
    win = paths.get("windows")
    if win is not None:
        win = Path(win)
        units = pq.read_table(prep / "units.parquet", columns=["row", "doc_id", "text"])
        texts = units["text"].to_pylist()
        out["train_texts"] = window_texts(np.load(win / "train.npy"), texts)
        test_ids = json.loads((win / "test_ids.json").read_text())
        out["eval_texts"] = {EVAL_SET: dict(zip(map(str, test_ids),
                                                window_texts(np.load(win / "test.npy"), texts)))}
        splits.append(window_split(prep, win, docs, units, p))
    out["splits"] = splits
    return out


def window_texts(windows: np.ndarray, texts: list[str]) -> list[str]:
    """One text per window (rows of unit indices): its units in order, one per line."""
    return ["\n".join(texts[r] for r in w) for w in windows.tolist()]


# ----------------------------------------------------------------------------- splits

def _examples(items: list[str]) -> str:
    return f"{len(items)} (e.g. {items[:SHOW]})"


def document_split(prep: Path, docs: list[dict], p: LvmParams) -> dict[str, Any]:
    """Re-derive each document's split and training-order rank from the seed, the stored keys and
    groups (the same input prepare gave split_joined) and compare."""
    sp = p.split
    problems: list[str] = []
    groups = [str(d["group"]) for d in docs]
    keys = [str(d["key"]) if d.get("key") is not None else g for d, g in zip(docs, groups)]
    try:
        split_of, rank = split_documents(keys, groups, sp)
    except ValueError as e:
        split_of = None
        problems.append(f"the stored groups cannot be split with these params: {e}")
    if split_of is not None:
        moved = [f"{d['doc_id']} ({s} -> {d['split']})" for d, s in zip(docs, split_of)
                 if d["split"] != s]
        reranked = [d["doc_id"] for d, s, r in zip(docs, split_of, rank)
                    if d["split"] == s and d["group_rank"] != r]
        if moved:
            problems.append("documents in another split than the seed gives: " + _examples(moved))
        if reranked:
            problems.append("training documents with another training-order rank than the seed "
                            "gives (the nested train_fraction subsets change): "
                            + _examples(reranked))
    summary_path = prep / "prepare.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for s in SPLITS:
        n, want = sum(d["split"] == s for d in docs), summary.get(f"documents_{s}")
        if want is not None and n != want:
            problems.append(f"documents.parquet has {n} {s} documents, prepare.json says {want}")
    # "arm": None: every arm that shares this prepare artifact shares its split, so the analysis
    # lists it once ("artifact" keeps the splits of different prepare runs apart)
    return {"name": "document split", "seed": sp.seed, "reproducible": not problems,
            "details": "; ".join(problems) if problems else
            "re-derived from the seed and the stored document groups",
            "arm": None, "artifact": prep.name}


def window_split(prep: Path, win: Path, docs: list[dict], units, p: LvmParams) -> dict[str, Any]:
    """Re-derive every split's windows (the training split at this arm's train_fraction) from the
    documents, as the windows stage does, and compare with the stored ids and row indices."""
    rows_of: dict[str, list[int]] = {}
    for r, d in zip(units["row"].to_pylist(), units["doc_id"].to_pylist()):
        rows_of.setdefault(d, []).append(r)
    rank = {d["group"]: d["group_rank"] for d in docs if d["split"] == "train"}
    ordered = sorted(rank, key=rank.get)
    problems: list[str] = []
    train_groups = set(nested_subset(ordered, p.train_fraction)) if ordered else set()
    for s in SPLITS:
        sel = [d for d in docs if d["split"] == s and (s != "train" or d["group"] in train_groups)]
        want, want_ids, _ = build_windows([(d["doc_id"], rows_of.get(d["doc_id"], []))
                                           for d in sel], p.window.k)
        have = np.load(win / f"{s}.npy")
        have_ids = [str(i) for i in json.loads((win / f"{s}_ids.json").read_text())]
        if have_ids != want_ids:
            extra = sorted(set(have_ids) - set(want_ids))
            lack = sorted(set(want_ids) - set(have_ids))
            what = ([f"{_examples(extra)} window(s) the re-derived split does not have"] * bool(extra)
                    + [f"{_examples(lack)} it has missing"] * bool(lack)) or ["another order"]
            problems.append(f"{s}_ids.json: " + ", ".join(what))
        if have.shape != want.shape or not np.array_equal(have, want):
            problems.append(f"{s}.npy: {len(have)} windows, the re-derived split gives "
                            f"{len(want)}" + ("" if len(have) != len(want) else
                                              " with other unit rows"))
    f = p.train_fraction
    return {"name": f"windows (train_fraction {f:g})", "seed": p.split.seed,
            "reproducible": not problems,
            "details": "; ".join(problems) if problems else
            "every split's windows re-derived from the documents and the seed's training order",
            "arm": None, "artifact": win.name}
