"""The ilm stage functions, in the order they run:

    prepare   params data, split           documents -> {train,valid,test}.jsonl, per level too
    tokenizer params tokenizer             a tokenizer folder with the ILM special tokens
    examples  params masking, train_level  masked training examples of the arm's level(s)
    testset   params testset               the fixed masked test set of every level (every arm's)
    train     params model, train          seeded; checkpoints and resumes; OOM back-off
    evaluate  params eval                  per-item perplexities of the trained model
    baseline  params train_level           the unigram baseline on the same test items

Artifacts (each stage writes only under ctx.out):
  prepare    {train,valid,test}.jsonl: the "all" subset (rows: id, level, text, strata);
             <level>/{train,valid,test}.jsonl: each level's subset; summary.json
  tokenizer  a folder `AutoTokenizer.from_pretrained` loads (tokenizer.json, ...), ILM tokens added
  examples   train/ and valid/: shard folders (examples.py) of the arm's train_level subset
  testset    <level>/: one shard folder per level with items.jsonl (item ids, <|start_infill|>
             positions) and meta["eval_set_digest"]; identical for every arm
  train      model/ (a transformers folder with the resolved config), train_log.jsonl
  evaluate, baseline   item_scores.parquet, summary.json

Each function reads top to bottom and calls library blocks (documents, tokenizer, examples, model,
train, evaluate, unigram; fairtrial.data and fairtrial.ml underneath); library errors (ValueError
naming the parameter or file) become StageError, so the user sees the message and no traceback.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fairtrial.data.split import PARTS, split_documents
from fairtrial.ml.causal_lm.memory import activation_gb
from fairtrial.recipes.api import StageError, stage_errors
from fairtrial.recipes.ilm import documents as D
from fairtrial.recipes.ilm import examples as E
from fairtrial.recipes.ilm import params as P
from fairtrial.recipes.ilm import tokenizer as T
from fairtrial.scores import eval_set_digest, write_item_scores

UNIGRAM_K = 1.0
"""Add-one (Laplace) smoothing for the unigram baseline."""


# ----------------------------------------------------------------------------- helpers

def _tokenizer_dir(p: Path) -> Path:
    """The tokenizer artifact is the folder itself or holds it in tokenizer/."""
    p = Path(p)
    if not (p / "tokenizer_config.json").exists() and (p / "tokenizer").is_dir():
        return p / "tokenizer"
    return p


def _shards(folder: Path, what: str):
    with stage_errors(what):
        return E.ExampleShards(folder)


def _input(ctx, name: str) -> Path:
    if name not in ctx.inputs:
        raise StageError(f"this stage needs the output of the {name} stage, which it was not given")
    return Path(ctx.inputs[name])


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


# ----------------------------------------------------------------------------- data stages

def prepare(ctx) -> dict:
    dp = ctx.params.data
    sp = ctx.params.split
    path = D.data_path(ctx.params)
    with stage_errors():
        docs = D.load_documents(dp, path)
        parts = split_documents(docs, sp.train, sp.valid, sp.test, sp.seed)
    levels = sorted({d.level for d in docs})
    summary: dict = {"source": str(path), "n_documents": len(docs), "levels": levels,
                     "counts": {}, "strata": {}, "lengths": {}}
    for subset in [*levels, "all"]:
        folder = ctx.out if subset == "all" else ctx.out / subset
        folder.mkdir(parents=True, exist_ok=True)
        for part in PARTS:
            rows = parts[part] if subset == "all" else [d for d in parts[part] if d.level == subset]
            D.write_split(folder / f"{part}.jsonl", rows)
            summary["counts"].setdefault(subset, {})[part] = len(rows)
        summary["lengths"][subset] = D.length_stats(
            [d.text for d in docs if subset == "all" or d.level == subset])
    strata = Counter("|".join([d.level, *(f"{k}={v}" for k, v in sorted(d.strata.items()))])
                     for d in docs)
    summary["strata"] = dict(sorted(strata.items()))
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=1))
    ctx.log.info("prepare: %d documents from %s; per level train/valid/test: %s", len(docs), path,
                 {k: "/".join(str(v[p]) for p in PARTS) for k, v in summary["counts"].items()})
    return {"n_documents": len(docs), "levels": levels, "counts": summary["counts"]}


def tokenizer(ctx) -> dict:
    tp = ctx.params.tokenizer
    train_file = ctx.inputs["prepare"] / "train.jsonl"
    with stage_errors("tokenizer"):
        if tp.name == "bpe":
            tok = T.train_bpe((r["text"] for r in D.read_split(train_file)), tp.vocab_size,
                              tp.min_frequency)
        else:
            tok = T.load_pretrained(tp.name)
    tok.save_pretrained(str(ctx.out))
    ids = T.special_ids(tok)
    ctx.log.info("tokenizer: %s, %d tokens", tp.name, len(tok))
    return {"tokenizer": tp.name, "vocab_size": len(tok), "special_ids": ids}


def examples(ctx) -> dict:
    mp = ctx.params.masking
    level = ctx.params.train_level
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
        rows = ((r["id"], r["text"]) for r in D.read_split(prep / f"{part}.jsonl")
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
    tp = ctx.params.testset
    prep = ctx.inputs["prepare"]
    levels = json.loads((prep / "summary.json").read_text())["levels"]
    tok_file = _tokenizer_file(ctx)
    summary: dict = {}
    for level in levels:
        rows = list(D.read_split(prep / level / "test.jsonl"))
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


# ----------------------------------------------------------------------------- model stages

def train(ctx) -> dict[str, Any]:
    """Build the model, train it on examples/train (validating on examples/valid), save model/."""
    from fairtrial.recipes.ilm import model as M
    from fairtrial.recipes.ilm import train as training

    mp = ctx.params.model
    tp = ctx.params.train.resolved(pretrained=mp.pretrained is not None)
    seed = int(ctx.seed or 0)
    examples = _input(ctx, "examples")
    with stage_errors():
        tok = M.load_tokenizer(_tokenizer_dir(_input(ctx, "tokenizer")))
        ids = T.special_ids(tok)
    train_set = _shards(examples / "train", "examples/train")
    valid_set = _shards(examples / "valid", "examples/valid")
    if len(valid_set) == 0:
        raise StageError("examples/valid is empty: the train stage needs validation examples")

    with stage_errors():
        shape = M.model_shape(mp, len(tok))
        n_params = shape["n_params"]
        # the widest micro-batch: the longest example (bucketed) or pad_to (padded), cut at the
        # model's positions
        seq = min(int(train_set.lengths().max()) if tp.batching == "bucketed" else tp.pad_to,
                  shape["n_positions"])
        act = activation_gb(shape["n_layer"], shape["n_embd"], tp.micro_batch, seq, len(tok))
        need_gb = M.check_memory(mp, n_params, ctx.device, act)
        model = M.build_model(mp, tok, seed=seed)
    ctx.log.info("model: %.2fM parameters, about %.2f GB to train", n_params / 1e6, need_gb)

    resolved = {"model": mp.model_dump(), "train": tp.model_dump(), "seed": seed,
                "device": ctx.device, "vocab_size": len(tok), "n_params": n_params,
                "special_ids": ids, "n_train_examples": len(train_set),
                "n_valid_examples": len(valid_set)}
    with stage_errors():
        result = training.train(model, train_set, valid_set, tp, ids=ids, seed=seed,
                                device=ctx.device, checkpoint_dir=Path(ctx.checkpoint_dir),
                                resolved=resolved, progress=ctx.progress, log=ctx.log,
                                heartbeat=ctx.heartbeat)

    resolved["selected_step"] = result["selected_step"]
    resolved["precision_used"] = result["precision"]
    M.save_model(model.cpu(), tok, Path(ctx.out) / "model", resolved)
    with open(Path(ctx.out) / "train_log.jsonl", "w", encoding="utf-8") as f:
        for row in result["history"]:
            f.write(json.dumps({"kind": "step", **row}) + "\n")
        for row in result["evals"]:
            f.write(json.dumps({"kind": "eval", **row}) + "\n")
    last = result["history"][-1] if result["history"] else {}
    return {"steps": result["steps"], "selected_step": result["selected_step"],
            "final_train_loss": last.get("loss"),
            "best_valid_infill_loss": result["best"].get("valid_infill_loss"),
            "n_params": n_params, "device": ctx.device, "precision": result["precision"],
            "useful_tokens_per_s": round(result["useful_tokens_per_s"], 1)}


def evaluate(ctx) -> dict[str, Any]:
    """Score the trained model on every test level; writes item_scores.parquet and summary.json."""
    from fairtrial.recipes.ilm import evaluate as scoring
    from fairtrial.recipes.ilm.infill import resolve_model_dir
    from fairtrial.recipes.ilm.model import load_model

    ep = ctx.params.eval
    with stage_errors():
        model, tok = load_model(resolve_model_dir(_input(ctx, "train")), device=ctx.device)
        rows, summary = scoring.evaluate_model(model, _input(ctx, "testset"), T.special_ids(tok),
                                               ep, device=ctx.device, progress=ctx.progress,
                                               log=ctx.log)
        write_item_scores(Path(ctx.out), rows)
    scoring.write_summary(ctx.out, summary)
    return {"levels": summary, "n_rows": len(rows)}


def baseline(ctx) -> dict[str, Any]:
    """The unigram baseline: fit on the arm's training texts, score the test examples."""
    from fairtrial.recipes.ilm import evaluate as scoring
    from fairtrial.recipes.ilm.model import load_tokenizer
    from fairtrial.recipes.ilm.unigram import fit_unigram, score_unigram

    train_level = ctx.params.train_level
    with stage_errors():
        tok = load_tokenizer(_tokenizer_dir(_input(ctx, "tokenizer")))
        ids = T.special_ids(tok)
        texts = D.train_texts(_input(ctx, "prepare"), train_level)
        if not texts:
            raise ValueError(f"train_level={train_level!r}: no training texts at that level")
        arrays = (np.asarray(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        logp = fit_unigram(arrays, len(tok), k=UNIGRAM_K, stop_id=ids["end_infill"])
        testset = _input(ctx, "testset")
        rows, summary = [], {}
        for lv in scoring.test_levels(testset):
            shards, item_ids, digest = scoring.open_testset(testset / lv)
            sums = score_unigram(logp, shards, ids)
            level_rows, _ = scoring.item_rows(item_ids, sums, eval_set=lv, digest=digest,
                                        system="unigram")
            rows += level_rows
            summary[lv] = scoring.summarise(sums)
            ctx.progress(len(summary), None, unit="level", message=f"level {lv}")
        write_item_scores(Path(ctx.out), rows)
    np.save(Path(ctx.out) / "unigram_logp.npy", logp)
    scoring.write_summary(ctx.out, summary)
    return {"levels": summary, "n_train_texts": len(texts), "n_rows": len(rows)}
