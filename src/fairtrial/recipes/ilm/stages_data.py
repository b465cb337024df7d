"""The data stages of the ilm recipe: prepare -> tokenizer -> examples / testset.

Artifacts (each stage writes only under ctx.out):
  prepare    {train,valid,test}.jsonl: the "all" subset (rows: id, level, text, strata);
             <level>/{train,valid,test}.jsonl: each level's subset; summary.json
  tokenizer  a folder `AutoTokenizer.from_pretrained` loads (tokenizer.json, ...), ILM tokens added
  examples   train/ and valid/: shard folders (examples.py) of the arm's train_level subset
  testset    <level>/: one shard folder per level with items.jsonl (item ids, <|start_infill|>
             positions) and meta["eval_set_digest"]; identical for every arm
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np

from fairtrial.data import readers as R
from fairtrial.recipes.api import StageError
from fairtrial.recipes.ilm import examples as E
from fairtrial.recipes.ilm import params as P
from fairtrial.recipes.ilm import tokenizer as T
from fairtrial.scores import eval_set_digest

PARTS = ("train", "valid", "test")


# ----------------------------------------------------------------------------- loading

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


# ----------------------------------------------------------------------------- splitting

_SPACES = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def group_documents(docs: list[R.Document]) -> list[list[int]]:
    """Indices of documents that must share a split: equal texts after whitespace/case
    normalisation, and equal meta["group"] (a OneStop topic). Union-find over both keys."""
    parent = list(range(len(docs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple, int] = {}
    for i, d in enumerate(docs):
        keys = [("text", _norm(d.text))]
        if d.meta.get("group") is not None:
            keys.append(("group", str(d.meta["group"])))
        for k in keys:
            j = first.setdefault(k, i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(docs)):
        groups[find(i)].append(i)
    return [groups[k] for k in sorted(groups)]


def _stratum(d: R.Document) -> tuple:
    return (d.level, tuple(sorted(d.strata.items())))


def split_documents(docs: list[R.Document], train: float = 0.8, valid: float = 0.1,
                    test: float = 0.1, seed: int = 0) -> dict[str, list[R.Document]]:
    """Deterministic group-aware stratified split. Groups (duplicates, shared topics) are kept
    whole; within each stratum (level x strata of a group's members) groups are shuffled with
    `seed` and cut by the fractions. Raises ValueError when a level cannot fill every part."""
    fractions = {"train": train, "valid": valid, "test": test}
    needed = [p for p in PARTS if fractions[p] > 0]
    per_level = Counter(d.level for d in docs)
    for lv, n in sorted(per_level.items()):
        if n < len(needed):
            raise ValueError(f'level "{lv}" has {n} document(s); the split '
                             f'{train:g}/{valid:g}/{test:g} needs at least {len(needed)} '
                             f"(one per part). Add documents, merge levels, or set a part to 0")
    groups = group_documents(docs)
    by_stratum: dict[tuple, list[list[int]]] = defaultdict(list)
    for g in groups:
        key = tuple(sorted({_stratum(docs[i]) for i in g}))
        by_stratum[key].append(g)
    out: dict[str, list[R.Document]] = {p: [] for p in PARTS}
    for key in sorted(by_stratum, key=repr):
        gs = sorted(by_stratum[key], key=lambda g: docs[g[0]].id)
        random.Random(f"{seed}\0{key!r}").shuffle(gs)
        n = len(gs)
        # test and valid take at least one group each when the stratum has enough groups, so
        # small levels still appear in every part
        n_test = max(1 if n >= len(needed) and test > 0 else 0, int(n * test + 0.5))
        n_valid = max(1 if n >= len(needed) and valid > 0 else 0, int(n * valid + 0.5))
        if train > 0:
            n_test = min(n_test, max(n - n_valid - 1, 0))
        cuts = {"test": gs[:n_test], "valid": gs[n_test:n_test + n_valid],
                "train": gs[n_test + n_valid:]}
        for part, gl in cuts.items():
            out[part].extend(docs[i] for g in gl for i in g)
    for part in PARTS:
        out[part].sort(key=lambda d: d.id)
    for lv in sorted(per_level):
        empty = [p for p in needed if not any(d.level == lv for d in out[p])]
        if empty:
            raise ValueError(f'level "{lv}" ends up with no documents in {"/".join(empty)} '
                             f"({per_level[lv]} documents in too few groups of duplicates or "
                             f"topics); add documents or merge levels")
    return out


def _length_stats(texts: list[str]) -> dict:
    if not texts:
        return {"n": 0}
    n = np.asarray([len(t) for t in texts])
    return {"n": int(n.size), "chars_mean": round(float(n.mean()), 1),
            "chars_median": float(np.median(n)), "chars_min": int(n.min()), "chars_max": int(n.max())}


def _write_jsonl(path: Path, docs: list[R.Document]) -> None:
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


# ----------------------------------------------------------------------------- stages

def prepare(ctx) -> dict:
    dp = P.DataParams.model_validate(ctx.params["data"])
    sp = P.SplitParams.model_validate(ctx.params.get("split", {}))
    path = data_path(ctx.params)
    try:
        docs = load_documents(dp, path)
        parts = split_documents(docs, sp.train, sp.valid, sp.test, sp.seed)
    except ValueError as e:
        raise StageError(str(e)) from None
    levels = sorted({d.level for d in docs})
    summary: dict = {"source": str(path), "n_documents": len(docs), "levels": levels,
                     "counts": {}, "strata": {}, "lengths": {}}
    for subset in [*levels, "all"]:
        folder = ctx.out if subset == "all" else ctx.out / subset
        folder.mkdir(parents=True, exist_ok=True)
        for part in PARTS:
            rows = parts[part] if subset == "all" else [d for d in parts[part] if d.level == subset]
            _write_jsonl(folder / f"{part}.jsonl", rows)
            summary["counts"].setdefault(subset, {})[part] = len(rows)
        summary["lengths"][subset] = _length_stats(
            [d.text for d in docs if subset == "all" or d.level == subset])
    strata = Counter("|".join([d.level, *(f"{k}={v}" for k, v in sorted(d.strata.items()))])
                     for d in docs)
    summary["strata"] = dict(sorted(strata.items()))
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=1))
    ctx.log.info("prepare: %d documents from %s; per level train/valid/test: %s", len(docs), path,
                 {k: "/".join(str(v[p]) for p in PARTS) for k, v in summary["counts"].items()})
    return {"n_documents": len(docs), "levels": levels, "counts": summary["counts"]}


def tokenizer(ctx) -> dict:
    tp = P.TokenizerParams.model_validate(ctx.params.get("tokenizer", {}))
    train_file = ctx.inputs["prepare"] / "train.jsonl"
    try:
        if tp.name == "bpe":
            tok = T.train_bpe((r["text"] for r in read_split(train_file)), tp.vocab_size,
                              tp.min_frequency)
        else:
            tok = T.load_pretrained(tp.name)
    except ValueError as e:
        raise StageError(f"tokenizer: {e}") from None
    tok.save_pretrained(str(ctx.out))
    ids = T.special_ids(tok)
    ctx.log.info("tokenizer: %s, %d tokens", tp.name, len(tok))
    return {"tokenizer": tp.name, "vocab_size": len(tok), "special_ids": ids}


def _tokenizer_file(ctx) -> Path:
    f = ctx.inputs["tokenizer"] / "tokenizer.json"
    if not f.exists():
        raise StageError(f"{ctx.inputs['tokenizer']}: no tokenizer.json; the tokenizer stage must "
                         f"write a fast tokenizer")
    return f


def _mask_kwargs(mp: P.MaskingParams) -> dict:
    return dict(kind=mp.kind, p=mp.p, ngram_max=mp.ngram_max, n_masks=mp.n_masks,
                max_retries=mp.max_retries, min_spans=mp.min_spans, seed=mp.seed,
                max_doc_tokens=mp.max_doc_tokens)


def examples(ctx) -> dict:
    mp = P.MaskingParams.model_validate(ctx.params.get("masking", {}))
    level = ctx.params.get("train_level", "all")
    prep = ctx.inputs["prepare"]
    known = json.loads((prep / "summary.json").read_text())["levels"]
    wanted = None if level == "all" else ({level} if isinstance(level, str) else set(level))
    unknown = sorted((wanted or set()) - set(known))
    if unknown:
        raise StageError(f'train_level: unknown level "{unknown[0]}"; known: {", ".join(known)}'
                         f' (or "all")')
    tok_file = _tokenizer_file(ctx)
    summary: dict = {"train_level": level}
    for part in ("train", "valid"):
        rows = ((r["id"], r["text"]) for r in read_split(prep / f"{part}.jsonl")
                if wanted is None or r["level"] in wanted)
        meta = E.build_shards(rows, ctx.out / part, tok_file, workers=mp.workers,
                              progress=lambda n, part=part: ctx.progress(n, None, "docs", part),
                              **_mask_kwargs(mp))
        summary[part] = {k: meta[k] for k in ("n_examples", "n_tokens", "n_docs", "char_mask_rate",
                                              "token_mask_rate", "span_counts")}
        ctx.log.info("examples %s/%s: %d examples, %d tokens, %.1f%% of tokens masked", level,
                     part, meta["n_examples"], meta["n_tokens"], 100 * meta["token_mask_rate"])
    return summary


def testset(ctx) -> dict:
    tp = P.TestsetParams.model_validate(ctx.params.get("testset", {}))
    prep = ctx.inputs["prepare"]
    levels = json.loads((prep / "summary.json").read_text())["levels"]
    tok_file = _tokenizer_file(ctx)
    summary: dict = {}
    for level in levels:
        rows = list(read_split(prep / level / "test.jsonl"))
        if tp.max_docs is not None:
            rows = rows[:tp.max_docs]
        if not rows:
            raise StageError(f'level "{level}" has no test documents; raise split.test')
        meta = E.build_shards(((r["id"], r["text"]) for r in rows), ctx.out / level, tok_file,
                              records=True, workers=1, **_mask_kwargs(tp))
        shards = E.ExampleShards(ctx.out / level)
        digest = eval_set_digest(shards.item_ids(), (e.tolist() for e in shards))
        meta["eval_set_digest"] = digest
        meta["eval_set"] = level
        tmp = ctx.out / level / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.replace(tmp, ctx.out / level / "meta.json")
        summary[level] = {"n_examples": meta["n_examples"], "eval_set_digest": digest,
                          "token_mask_rate": meta["token_mask_rate"]}
        ctx.log.info("testset %s: %d examples, digest %s", level, meta["n_examples"], digest[:12])
    return summary


def prepare_input_files(params: dict) -> list[Path]:
    return [data_path(params)]
