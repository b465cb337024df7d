"""The lvm stage functions: prepare -> embed -> windows -> train, baseline -> evaluate.

Each reads its params from ctx.params, its upstream artifacts from ctx.inputs, writes under ctx.out
and returns a small summary. Expected failures (bad data, bad params) raise StageError with the
file, split or parameter named.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fairtrial.data.split import group_labels, nested_subset
from fairtrial.ml.embed import VectorCache, encoder_key, load_encoder, text_digest
from fairtrial.recipes.api import StageError, stage_errors
from fairtrial.recipes.lvm import corpus, scoring
from fairtrial.recipes.lvm.windows import build_windows, gather
from fairtrial.scores import eval_set_digest, write_item_scores

SPLITS = ("train", "valid", "test")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))


def _read_json(path: Path):
    return json.loads(Path(path).read_text())


# -- 1. prepare ------------------------------------------------------------------------------

def prepare(ctx) -> dict:
    """Documents -> units (sentences or chunks) and a seeded split of document groups: documents
    sharing split.group_by's value, and exact or normalised duplicates, never straddle splits
    (fairtrial.data.split)."""
    p = ctx.params
    with stage_errors("data"):
        path = corpus.resolve_source(p.data.source)
        docs = corpus.read_documents(path, p.data.format, p.data.text_field, p.data.id_field)
    if p.data.levels is not None:
        keep = {str(x).lower() for x in p.data.levels}
        levels = sorted({(corpus.field_of(d, "level") or "").lower() for d in docs})
        docs = [d for d in docs if (corpus.field_of(d, "level") or "").lower() in keep]
        if not docs:
            raise StageError(f"data.levels {p.data.levels} matches no document; levels present: "
                             f"{levels}")

    group_by = p.split.group_by
    if group_by == "auto":  # readers mark groups (a OneStop topic) in meta["group"]
        group_by = "group" if all(corpus.field_of(d, "group") for d in docs) else None
    if group_by is not None:
        missing = [d.id for d in docs if corpus.field_of(d, group_by) is None]
        if missing:
            raise StageError(f"split.group_by = {group_by!r}: {len(missing)} document(s) have no "
                             f"such field (first: {missing[0]!r}); set split.group_by to a "
                             "metadata field every document has, or to none")
    # a document's own key (its topic, or its id), and its group: the smallest key of the
    # documents it must stay with (same key, or an exact or normalised duplicate text)
    keys = [corpus.field_of(d, group_by) if group_by else d.id for d in docs]
    groups = group_labels(docs, (lambda d: corpus.field_of(d, group_by)) if group_by
                          else (lambda d: None))
    with stage_errors("split"):
        split_of, group_rank = corpus.split_documents(keys, groups, p.split)

    unit_rows = {"row": [], "doc_id": [], "position": [], "text": [], "digest": []}
    doc_rows = {"doc_id": [], "key": [], "group": [], "split": [], "group_rank": [], "level": [],
                "n_units": []}
    for i, (d, g) in enumerate(zip(docs, groups)):
        us = corpus.units(d.text, p.data.unit_sentences, p.data.min_chars)
        for pos, u in enumerate(us):
            unit_rows["row"].append(len(unit_rows["row"]))
            unit_rows["doc_id"].append(d.id)
            unit_rows["position"].append(pos)
            unit_rows["text"].append(u)
            unit_rows["digest"].append(text_digest(u))
        doc_rows["doc_id"].append(d.id)
        doc_rows["key"].append(keys[i])
        doc_rows["group"].append(g)
        doc_rows["split"].append(split_of[i])
        doc_rows["group_rank"].append(group_rank[i])
        doc_rows["level"].append(corpus.field_of(d, "level") or "")
        doc_rows["n_units"].append(len(us))
        if i % 50 == 0:
            ctx.progress(i, len(docs), "docs", "splitting sentences")
    if not unit_rows["row"]:
        raise StageError(f"data: the {len(docs)} document(s) in {path} contain no sentences")
    pq.write_table(pa.table(unit_rows), ctx.out / "units.parquet")
    pq.write_table(pa.table(doc_rows), ctx.out / "documents.parquet")
    per_split = Counter(doc_rows["split"])
    summary = {"documents": len(docs), "units": len(unit_rows["row"]),
               "groups": len(set(groups)), "group_by": group_by or "document",
               **{f"documents_{s}": per_split.get(s, 0) for s in SPLITS}}
    _write_json(ctx.out / "prepare.json", summary)
    return summary


# -- 2. embed --------------------------------------------------------------------------------

def embed(ctx) -> dict:
    """One vector per unit (row-aligned with units.parquet), computed once per distinct text."""
    p = ctx.params.embed
    units = pq.read_table(ctx.inputs["prepare"] / "units.parquet", columns=["text", "digest"])
    texts, digests = units["text"].to_pylist(), units["digest"].to_pylist()
    first = {}
    for t, d in zip(texts, digests):
        first.setdefault(d, t)
    uniq = list(first)

    with stage_errors():
        key = encoder_key(p.model, p.max_seq_length)
        cache = VectorCache(Path(p.cache_dir), key, p.normalize) if p.cache_dir else None
        known, dim = cache.get(uniq) if cache else ({}, None)
    todo = [d for d in uniq if d not in known]
    done = [0]

    def on_batch(n: int) -> None:
        done[0] += n
        ctx.progress(done[0], len(todo), "sentences", "embedding")

    load_s = encode_s = 0.0
    if todo:  # a fully cached run never loads the model
        t0 = time.perf_counter()
        with stage_errors():
            enc = load_encoder(p.model, device=ctx.device, max_seq_length=p.max_seq_length)
        load_s = time.perf_counter() - t0
        if dim is not None and dim != enc.dim:
            raise StageError(f"embedding cache {cache.folder} holds {dim}-d vectors but the "
                             f"model gives {enc.dim}-d: the cache belongs to another model; "
                             "delete it or point embed.cache_dir elsewhere")
        dim = enc.dim
        t1 = time.perf_counter()
        new = enc.encode([first[d] for d in todo], batch_size=p.batch_size,
                         normalize=p.normalize, on_batch=on_batch)
        encode_s = time.perf_counter() - t1
        if cache:
            cache.put(todo, new)
    else:
        new = np.empty((0, dim), np.float32)
    vec_of = dict(known)
    vec_of.update(zip(todo, new))

    # Written through a memory map: the file is the artifact, readers open it with mmap_mode="r".
    out = np.lib.format.open_memmap(ctx.out / "embeddings.npy", mode="w+", dtype=p.dtype,
                                    shape=(len(digests), dim))
    for i, d in enumerate(digests):
        out[i] = vec_of[d]
    out.flush()
    del out
    info = {"model": p.model, "encoder_key": key, "dim": dim, "dtype": p.dtype,
            "normalize": p.normalize}
    _write_json(ctx.out / "embed.json", info)
    return {**info, "units": len(digests), "distinct_texts": len(uniq), "encoded": len(todo),
            "from_cache": len(uniq) - len(todo), "load_seconds": round(load_s, 2),
            "encode_seconds": round(encode_s, 2),
            "sentences_per_second": round(len(todo) / encode_s, 1) if todo and encode_s else None}


def load_vectors(embed_dir: Path) -> np.ndarray:
    return np.load(Path(embed_dir) / "embeddings.npy", mmap_mode="r")


# -- 3. windows ------------------------------------------------------------------------------

def windows(ctx) -> dict:
    """k-unit contexts -> next unit, per split, never crossing a document; the training split is
    the nested subset of training groups for this arm's train_fraction."""
    p = ctx.params
    k = p.window.k
    prep = ctx.inputs["prepare"]
    docs = pq.read_table(prep / "documents.parquet").to_pylist()
    units = pq.read_table(prep / "units.parquet", columns=["row", "doc_id", "digest"])
    rows_of: dict[str, list[int]] = {}
    for r, d in zip(units["row"].to_pylist(), units["doc_id"].to_pylist()):
        rows_of.setdefault(d, []).append(r)
    digests = units["digest"].to_pylist()

    rank = {d["group"]: d["group_rank"] for d in docs if d["split"] == "train"}
    ordered = sorted(rank, key=rank.get)  # the fixed permutation drawn in prepare
    train_groups = set(nested_subset(ordered, p.train_fraction))

    counts: dict = {"k": k, "train_fraction": p.train_fraction,
                    "train_groups": len(train_groups), "train_groups_all": len(ordered)}
    for split in SPLITS:
        sel = [d for d in docs if d["split"] == split
               and (split != "train" or d["group"] in train_groups)]
        w, ids, skipped = build_windows([(d["doc_id"], rows_of.get(d["doc_id"], [])) for d in sel],
                                        k)
        if len(w) == 0 and (split != "valid" or sel):  # valid may be empty only by choice
            fix = {"train": "raise train_fraction or lower split.valid / split.test",
                   "valid": "raise split.valid (or set it to 0 to train without early stopping)",
                   "test": "raise split.test"}[split]
            raise StageError(
                f"windows: the {split} split has no windows ({len(sel)} document(s), "
                f"{len(skipped)} shorter than k+1 = {k + 1} units). Lower window.k, {fix}, "
                "or add longer documents.")
        np.save(ctx.out / f"{split}.npy", w)
        _write_json(ctx.out / f"{split}_ids.json", ids)
        counts[f"{split}_documents"] = len(sel)
        counts[f"{split}_windows"] = len(w)
        counts[f"{split}_skipped_short_documents"] = len(skipped)
        if split == "train":
            train_digests = {digests[r] for r in np.unique(w)} if len(w) else set()
        if split == "test":
            test_digests = {digests[r] for r in np.unique(w)} if len(w) else set()
    # Integrity: documents are disjoint by construction, but a sentence text can still recur
    # across documents (boilerplate, quotes). Counted, not hidden.
    counts["test_units_seen_in_train"] = len(test_digests & train_digests)
    counts["test_units_distinct"] = len(test_digests)
    _write_json(ctx.out / "counts.json", counts)
    return counts


# -- 4. train --------------------------------------------------------------------------------

def _windows_arrays(vectors, win_dir: Path, split: str):
    w = np.load(win_dir / f"{split}.npy")
    return gather(vectors, w) if len(w) else (np.empty((0, w.shape[1] - 1, vectors.shape[1]),
                                                       np.float32),
                                             np.empty((0, vectors.shape[1]), np.float32))


def train(ctx) -> dict:
    import torch

    from fairtrial.recipes.lvm.models import build_model
    from fairtrial.recipes.lvm.training import fit

    p = ctx.params
    if p.train.threads:
        torch.set_num_threads(p.train.threads)
    seed = int(ctx.seed if ctx.seed is not None else 0)
    vectors = load_vectors(ctx.inputs["embed"])
    tr = _windows_arrays(vectors, ctx.inputs["windows"], "train")
    va = _windows_arrays(vectors, ctx.inputs["windows"], "valid")
    k, dim = tr[0].shape[1], vectors.shape[1]
    if len(tr[0]) == 0:
        raise StageError("train: no training windows (see the windows stage counts)")

    torch.manual_seed(seed)  # weight init
    config = {"arch": p.arch, "dim": dim, "k": k, "model": p.model.model_dump()}
    model = build_model(p.arch, dim, k, **p.model.model_dump())
    n_params = sum(x.numel() for x in model.parameters())
    ctx.log.info("lvm %s: %d parameters, %d training windows", p.arch, n_params, len(tr[0]))

    def on_epoch(done: int, total: int, rec: dict) -> None:
        msg = " ".join(f"{k} {v:.4g}" for k, v in rec.items() if k != "epoch")
        ctx.progress(done, total, "epochs", msg)

    result = fit(model, tr, va, p.train, seed, ctx.checkpoint_dir, device=ctx.device,
                 on_epoch=on_epoch, on_step=ctx.heartbeat, log=ctx.log,
                 config={**config, "train": p.train.model_dump(), "seed": seed,
                         "device": ctx.device})
    torch.save({"config": config, "train": p.train.model_dump(), "seed": seed,
                "state_dict": {k_: v.cpu() for k_, v in model.state_dict().items()}},
               ctx.out / "model.pt")
    _write_json(ctx.out / "history.json", result["history"])
    return {"arch": p.arch, "parameters": n_params, "train_windows": len(tr[0]),
            "valid_windows": len(va[0]), "epochs_run": result["epochs_run"],
            "best_epoch": result["best_epoch"], "best_valid_loss": result["best_valid_loss"],
            "stopped_early": result["stopped_early"], "train_seconds": round(result["seconds"], 2)}


# -- 5. baseline -----------------------------------------------------------------------------

BASELINES = ("copy_last", "mean_context", "ridge")


def baseline(ctx) -> dict:
    """Trivial baselines' predictions for the test windows. A stage of its own because it depends
    on the windows (train_fraction) but not on the architecture or seed: one fit serves them all."""
    p = ctx.params.baseline
    vectors = load_vectors(ctx.inputs["embed"])
    win_dir = ctx.inputs["windows"]
    test_w = np.load(win_dir / "test.npy")
    ctx_t, _ = gather(vectors, test_w) if len(test_w) else (np.empty((0, 1, vectors.shape[1])),
                                                             None)
    tr_ctx, tr_tgt = _windows_arrays(vectors, win_dir, "train")
    va_ctx, va_tgt = _windows_arrays(vectors, win_dir, "valid")
    t0 = time.perf_counter()
    if p.ridge_alpha is None and len(va_ctx):
        ridge, val_cos = scoring.Ridge.select(tr_ctx, tr_tgt, va_ctx, va_tgt, p.ridge_alphas)
    else:  # a fixed alpha, or no validation split to choose one on
        ridge, val_cos = scoring.Ridge(p.ridge_alpha or 1.0).fit(tr_ctx, tr_tgt), {}
    fit_s = time.perf_counter() - t0
    preds = {"copy_last": scoring.copy_last(ctx_t), "mean_context": scoring.mean_context(ctx_t),
             "ridge": ridge.predict(ctx_t)}
    np.savez(ctx.out / "predictions.npz", **{k: v.astype(np.float32) for k, v in preds.items()})
    return {"test_windows": len(test_w), "ridge_train_windows": len(tr_ctx),
            "ridge_alpha": ridge.alpha,
            "ridge_valid_cosine": {str(a): round(c, 5) for a, c in val_cos.items()},
            "ridge_fit_seconds": round(fit_s, 2)}


# -- 6. evaluate -----------------------------------------------------------------------------

def evaluate(ctx) -> dict:
    """Per test window: cosine to the true next vector and the rank of the true next unit among
    all distinct test units except the window's own context; for the model and for the trivial
    baselines, on the same windows."""
    vectors = load_vectors(ctx.inputs["embed"])
    win_dir = ctx.inputs["windows"]
    test_w = np.load(win_dir / "test.npy")
    test_ids = _read_json(win_dir / "test_ids.json")
    if len(test_w) == 0:
        raise StageError("evaluate: the test split has no windows")
    digests = pq.read_table(ctx.inputs["prepare"] / "units.parquet",
                            columns=["digest"])["digest"].to_pylist()

    # candidates: the distinct units of the test documents' windows
    test_rows = np.unique(test_w)
    cand_digest = sorted({digests[r] for r in test_rows})
    cand_index = {d: i for i, d in enumerate(cand_digest)}
    first_row = {}
    for r in test_rows:
        first_row.setdefault(digests[r], r)
    candidates = np.asarray(vectors[[first_row[d] for d in cand_digest]], np.float32)
    target_idx = np.array([cand_index[digests[r]] for r in test_w[:, -1]])
    context_idx = np.array([[cand_index[digests[r]] for r in w] for w in test_w[:, :-1]])
    ctx_t, tgt_t = gather(vectors, test_w)

    from fairtrial.recipes.lvm.models import latency_ms, load_model, predict

    model = load_model(ctx.inputs["train"], ctx.device)
    t0 = time.perf_counter()
    preds = {"model": predict(model, ctx_t, device=ctx.device)}
    predict_s = time.perf_counter() - t0
    with np.load(ctx.inputs["baseline"] / "predictions.npz") as z:
        for name in BASELINES:
            if z[name].shape != preds["model"].shape:
                raise StageError(f"evaluate: baseline {name} has predictions of shape "
                                 f"{z[name].shape}, the model {preds['model'].shape}: the "
                                 "baseline artifact belongs to other windows")
            preds[name] = z[name]

    digest = eval_set_digest(test_ids)
    doc_ids = [i.rsplit("#", 1)[0] for i in test_ids]
    cols = {c: [] for c in ("item_id", "eval_set", "eval_set_digest", "metric", "value", "system",
                            "doc_id")}
    means = {}
    for system, pred in preds.items():
        for metric, values in scoring.window_metrics(pred, tgt_t, candidates, target_idx,
                                                        context_idx).items():
            n = len(values)
            cols["item_id"] += test_ids
            cols["eval_set"] += ["test"] * n
            cols["eval_set_digest"] += [digest] * n
            cols["metric"] += [metric] * n
            cols["value"] += values.tolist()
            cols["system"] += [system] * n
            cols["doc_id"] += doc_ids
            means[f"{system}.{metric}"] = round(float(np.mean(values)), 5)
        ctx.heartbeat()
    with stage_errors("evaluate", hint=" (the model produced non-finite predictions?)"):
        write_item_scores(ctx.out, cols)

    latency = {"latency_ms_batch1": latency_ms(model, ctx_t[:1], 1, ctx.device, 50),
               "latency_ms_batch256": latency_ms(model, ctx_t, 256, ctx.device, 10)}
    summary = {"test_windows": len(test_ids), "candidates": len(cand_digest),
               "eval_set_digest": digest, "predict_seconds": round(predict_s, 3), **latency,
               **means}
    _write_json(ctx.out / "summary.json", summary)
    return summary
