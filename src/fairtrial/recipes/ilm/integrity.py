"""The ilm recipe's integrity hook (`Recipe.integrity`): what the report's train/eval overlap and
split reproducibility checks need, read from one arm's finished artifacts. Pure over files.

  train_texts  the training-split documents of the arm's train_level subset, as the examples stage
               selects them (prepare/train.jsonl filtered by level): what the model trained on
  eval_texts   level -> {item id -> the test document behind it}. A test item is a masked test
               document (or a chunk of one, "#c"; one of several masks, "/k"): the whole document
               is what would have to be in the training data for the item to be memorised
  splits       "prepare split": the split re-derived from split.seed and the data source with the
               prepare stage's own split_documents, compared with the artifact's JSONL files, plus
               the artifact's own consistency (parts disjoint, level files = the "all" files
               filtered by level, counts = summary.json); "testset items": every testset item id
               belongs to a test-split document of its level

Nothing here changes what a stage writes: the artifacts stay valid cache entries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fairtrial.data.split import PARTS, split_documents
from fairtrial.recipes.api import StageError
from fairtrial.recipes.ilm import params as P
from fairtrial.recipes.ilm import documents as D
from fairtrial.recipes.ilm.examples import ExampleShards

SHOW = 3   # mismatching ids named in a detail message


def integrity(paths: dict[str, Path], params: dict[str, Any]) -> dict[str, Any]:
    """The hook: {"train_texts", "eval_texts", "splits"}, each only when its artifact exists."""
    out: dict[str, Any] = {}
    prep = paths.get("prepare")
    if prep is None:
        return out
    prep = Path(prep)
    out["train_texts"] = train_texts(prep, params.get("train_level", "all"))
    splits = [prepare_split(prep, params)]
    if paths.get("testset") is not None:
        texts, unmatched = eval_texts(Path(paths["testset"]), prep)
        out["eval_texts"] = texts
        splits.append(testset_items(Path(paths["testset"]), params, unmatched))
    out["splits"] = splits
    return out


# ----------------------------------------------------------------------------- texts

def _rows(path: Path) -> list[dict]:
    return list(D.read_split(path)) if path.exists() else []


def train_texts(prep: Path, train_level: str | list[str]) -> list[str]:
    """The documents the examples stage builds training examples from (the same selection)."""
    wanted = None if train_level == "all" else (
        {train_level} if isinstance(train_level, str) else set(train_level))
    return [r["text"] for r in _rows(prep / "train.jsonl")
            if wanted is None or r["level"] in wanted]


def document_of(item_id: str, docs: dict[str, str]) -> str | None:
    """The document id behind a testset item id: the id itself, or the id less a "/k" (k-th mask)
    and then a "#c" (c-th chunk) suffix. Tried outside in, checking membership at each step, so a
    document id that itself contains "/" or "#" still matches."""
    cand = item_id
    for sep in ("/", "#"):
        if cand in docs:
            return cand
        head, found, tail = cand.rpartition(sep)
        if found and tail.isdigit():
            cand = head
    return cand if cand in docs else None


def eval_texts(testset: Path, prep: Path) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """(level -> {item id -> test document text}, level -> item ids with no test document)."""
    texts: dict[str, dict[str, str]] = {}
    unmatched: dict[str, list[str]] = {}
    for folder in sorted(p for p in testset.iterdir() if (p / "meta.json").exists()):
        level = folder.name
        docs = {r["id"]: r["text"] for r in _rows(prep / level / "test.jsonl")}
        items: dict[str, str] = {}
        for item in dict.fromkeys(ExampleShards(folder).doc_ids()):  # the scored item ids
            doc = document_of(str(item), docs)
            if doc is None:
                unmatched.setdefault(level, []).append(str(item))
            else:
                items[str(item)] = docs[doc]
        texts[level] = items
    return texts, unmatched


# ----------------------------------------------------------------------------- splits

def _key(r: dict) -> str:
    """One row as a comparable string (id, level, text, strata)."""
    return json.dumps([r["id"], r["level"], r["text"], r.get("strata") or {}], sort_keys=True,
                      ensure_ascii=False)


def _diff(part: str, have: list[str], want: list[str]) -> str | None:
    """What differs between the artifact's rows and the re-derived ones, or None."""
    if have == want:
        return None
    have_set, want_set = set(have), set(want)
    extra = [json.loads(k)[0] for k in have if k not in want_set]
    lack = [json.loads(k)[0] for k in want if k not in have_set]
    if not extra and not lack:
        return f"{part}: same rows in another order"
    return (f"{part}: {len(extra)} row(s) the re-derived split does not have"
            + (f" (e.g. {extra[:SHOW]})" if extra else "")
            + f", {len(lack)} it has that are missing" + (f" (e.g. {lack[:SHOW]})" if lack else ""))


def _consistency(prep: Path, parts: dict[str, list[dict]]) -> list[str]:
    """Problems inside the artifact itself: overlapping parts, level files that disagree with the
    "all" files, counts that disagree with summary.json."""
    problems = []
    ids = {p: {r["id"] for r in rows} for p, rows in parts.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        both = sorted(ids[a] & ids[b])
        if both:
            problems.append(f"documents in both {a} and {b}: {len(both)} (e.g. {both[:SHOW]})")
    summary_path = prep / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for level in summary.get("levels", []):
        for part, rows in parts.items():
            want = [_key(r) for r in rows if r["level"] == level]
            bad = _diff(f"{level}/{part}.jsonl vs {part}.jsonl", [_key(r) for r in
                        _rows(prep / level / f"{part}.jsonl")], want)
            if bad:
                problems.append(bad)
    for subset, counts in summary.get("counts", {}).items():
        folder = prep if subset == "all" else prep / subset
        for part, n in counts.items():
            have = len(_rows(folder / f"{part}.jsonl"))
            if have != n:
                problems.append(f"{subset}/{part}: {have} rows, summary.json says {n}")
    return problems


def _rederive(prep: Path, params: dict, sp: P.SplitParams,
              parts: dict[str, list[dict]]) -> tuple[list[str], str | None]:
    """(differences from the re-derived split, why it could not be re-derived or None)."""
    try:
        dp = P.DataParams.model_validate(params["data"])
        path = D.data_path(params)
        docs = D.load_documents(dp, path)
        again = split_documents(docs, sp.train, sp.valid, sp.test, sp.seed)
    except (StageError, ValueError, OSError, KeyError) as e:
        return [], f"not re-derived ({e})"
    problems = []
    summary_path = prep / "summary.json"
    then = json.loads(summary_path.read_text()).get("n_documents") if summary_path.exists() else None
    if then is not None and then != len(docs):
        problems.append(f"the data source {path} now has {len(docs)} documents, the artifact was "
                        f"made from {then}: the source changed since prepare")
    for part in PARTS:
        bad = _diff(f"{part}.jsonl", [_key(r) for r in parts[part]],
                    [_key({"id": d.id, "level": d.level, "text": d.text, "strata": d.strata})
                     for d in again[part]])
        if bad:
            problems.append(bad)
    return problems, None


def prepare_split(prep: Path, params: dict) -> dict[str, Any]:
    """The document split: reproducible when the artifact is self-consistent and equals the split
    re-derived from the seed and the source. When the source cannot be read (moved, another
    machine) only the consistency is checked, and the details say so."""
    sp = P.SplitParams.model_validate(params.get("split") or {})
    parts = {part: _rows(prep / f"{part}.jsonl") for part in PARTS}
    problems = _consistency(prep, parts)
    diffs, skipped = _rederive(prep, params, sp, parts)
    problems += diffs
    checked = "artifact consistency only: " + skipped if skipped else \
        "re-derived from the seed and the data source, and artifact consistency"
    # "arm": None: the split is shared by the arms that share this prepare artifact, so the
    # analysis lists it once ("artifact" keeps splits of different prepare runs apart)
    return {"name": "prepare split", "seed": sp.seed, "reproducible": not problems,
            "details": "; ".join(problems) if problems else checked,
            "arm": None, "artifact": prep.name}


def testset_items(testset: Path, params: dict, unmatched: dict[str, list[str]]) -> dict[str, Any]:
    """The testset is derived from the split's test documents: an item id that names no test
    document means the two disagree (the eval set is not the split's)."""
    tp = P.TestsetParams.model_validate(params.get("testset") or {})
    problems = [f"{lv}: {len(ids)} item(s) with no test document (e.g. {ids[:SHOW]})"
                for lv, ids in sorted(unmatched.items())]
    return {"name": "testset items", "seed": tp.seed, "reproducible": not problems,
            "details": "; ".join(problems) if problems else
            "every item id belongs to a test document of its level",
            "arm": None, "artifact": testset.name}
