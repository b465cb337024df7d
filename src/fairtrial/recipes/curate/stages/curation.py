"""The curate recipe's stage functions, in the order they run: collect -> quality -> language ->
dedup -> select. Each reads its params, opens its inputs, calls the library blocks (collect,
quality, language, dedup, select), writes under ctx.out and records what it kept and removed, per
source and per rule, in `funnel.json` (what the report's funnel shows).

Nothing removed comes back: each filter reads the survivors of the one before it (its funnel
"in" is the previous funnel's "out"); the per-sample verdicts of quality and language are
computed on every collected sample so that select can build the single-filter ablation arms.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fairtrial.recipes.api import StageError, stage_errors
from fairtrial.recipes.curate import collect as collect_lib
from fairtrial.recipes.curate import dedup as dedup_lib
from fairtrial.recipes.curate import language as language_lib
from fairtrial.recipes.curate import quality as quality_lib
from fairtrial.recipes.curate import select as select_lib

FUNNEL = "funnel.json"


# ----------------------------------------------------------------------------- helpers

def _counts(sources) -> dict[str, int]:
    return dict(sorted(Counter(sources).items()))


def _write_funnel(out: Path, stage: str, n_in: dict, n_out: dict, removed: dict, **extra) -> dict:
    funnel = {"stage": stage, "in": n_in, "out": n_out,
              "removed": {rule: dict(sorted(by.items())) for rule, by in removed.items() if by},
              **extra}
    (out / FUNNEL).write_text(json.dumps(funnel, indent=1, sort_keys=True))
    return funnel


def _table(ctx, stage: str, name: str, columns=None) -> pa.Table:
    return pq.read_table(Path(ctx.inputs[stage]) / name, columns=columns)


def _survivors(ctx, stage: str) -> set[str]:
    """The ids a filter stage kept (its `kept` column)."""
    t = _table(ctx, stage, "verdicts.parquet", ["id", "kept"])
    return {i for i, k in zip(t["id"].to_pylist(), t["kept"].to_pylist()) if k}


def _summary(funnel: dict) -> dict:
    return {"in": sum(funnel["in"].values()), "out": sum(funnel["out"].values()),
            "removed": {r: sum(by.values()) for r, by in funnel["removed"].items()}}


# ----------------------------------------------------------------------------- 1. collect

def collect(ctx) -> dict:
    """Every declared source into samples.parquet, every evaluation set into eval.parquet."""
    p = ctx.params
    if not p.sources:
        raise StageError("params.sources is empty: declare at least one [[params.sources]] with "
                         "name, path and format")
    rows, evals, skipped = [], [], []
    for i, src in enumerate(p.sources):
        with stage_errors(f"params.sources[{i}] ({src.name})"):
            got = collect_lib.read_source(src, p.on_error)
        rows += got.rows
        skipped += [{"source": src.name, "file": s.file, "line": s.line, "reason": s.reason}
                    for s in got.skipped]
        ctx.progress(i + 1, len(p.sources) + len(p.eval_sets), "source")
    for i, src in enumerate(p.eval_sets):
        with stage_errors(f"params.eval_sets[{i}] ({src.name})"):
            got = collect_lib.read_source(src, "raise")  # an evaluation set must be whole
        evals += got.rows
    dup = collect_lib.duplicate_ids(rows + evals)
    if dup:
        raise StageError(f"sample ids repeat across sources: {', '.join(dup[:3])}; give the "
                         "sources distinct names")
    pq.write_table(collect_lib.to_table(rows), ctx.out / "samples.parquet")
    pq.write_table(collect_lib.to_table(evals), ctx.out / "eval.parquet")
    (ctx.out / "skipped.json").write_text(json.dumps(skipped, indent=1))
    n = _counts(r.source for r in rows)
    skipped_by = _counts(s["source"] for s in skipped)
    funnel = _write_funnel(ctx.out, "collect", {s: n.get(s, 0) + skipped_by.get(s, 0) for s in
                                                 sorted(set(n) | set(skipped_by))}, n,
                           {"malformed": skipped_by}, eval_items=_counts(r.source for r in evals),
                           skipped_first=[f"{s['file']}: line {s['line']}: {s['reason']}"
                                          for s in skipped[:5]])
    ctx.log.info("collect: %d samples from %d sources, %d skipped, %d evaluation items",
                 len(rows), len(p.sources), len(skipped), len(evals))
    return {**_summary(funnel), "eval_items": len(evals)}


# ----------------------------------------------------------------------------- 2. quality

def quality(ctx) -> dict:
    """Deterministic scores for every sample; the first failing rule removes it."""
    p = ctx.params.quality
    t = _table(ctx, "collect", "samples.parquet", ["id", "source", "prompt", "response"])
    ids, sources = t["id"].to_pylist(), t["source"].to_pylist()
    prompts, responses = t["prompt"].to_pylist(), t["response"].to_pylist()
    model_scores: dict[str, list] = {}
    if p.ifd:  # the optional model-based score (ifd.py)
        from fairtrial.ml.causal_lm.model import load_causal_lm
        from fairtrial.recipes.curate.ifd import ifd_scores

        with stage_errors(f"quality.ifd_model {p.ifd_model!r}"):
            model, tok = load_causal_lm(p.ifd_model, device=ctx.device)
        cond, uncond, ratio = ifd_scores(model, tok, prompts, responses, max_tokens=p.ifd_max_tokens,
                                         batch_size=p.ifd_batch_size, device=ctx.device,
                                         progress=lambda d: ctx.progress(d, 2 * len(ids), "sequence"))
        model_scores = {"loss_with_prompt": cond.tolist(), "loss_without_prompt": uncond.tolist(),
                        "ifd": ratio.tolist()}
    cols = defaultdict(list)
    removed: dict[str, Counter] = defaultdict(Counter)
    for k, (pr, rs) in enumerate(zip(prompts, responses)):
        s = quality_lib.score(pr, rs)
        s.update({key: v[k] for key, v in model_scores.items()})
        fails = quality_lib.failed_rules(s, p)
        for key, v in s.items():
            cols[key].append(v)
        cols["rules"].append(",".join(fails))
        cols["kept"].append(not fails)
        if fails:
            removed[fails[0]][sources[k]] += 1
        if k % 5000 == 0:
            ctx.progress(k, len(ids), "sample")
    pq.write_table(pa.table({"id": ids, "source": sources, **cols}), ctx.out / "verdicts.parquet")
    n_out = _counts(s for s, k in zip(sources, cols["kept"]) if k)
    funnel = _write_funnel(ctx.out, "quality", _counts(sources), n_out,
                           {r: removed[r] for r in quality_lib.RULES if r in removed},
                           flagged={r: sum(1 for x in cols["rules"] if r in x.split(","))
                                    for r in quality_lib.RULES})
    return _summary(funnel)


# ----------------------------------------------------------------------------- 3. language

def language(ctx) -> dict:
    """lingua on every sample; the survivors of quality that are not in the language are removed,
    abstentions counted apart (kept or dropped as the study says)."""
    p = ctx.params.language
    t = _table(ctx, "collect", "samples.parquet", ["id", "source", "prompt", "response"])
    ids, sources = t["id"].to_pylist(), t["source"].to_pylist()
    if p.enabled:
        fields = ["prompt", "response"] if p.field == "both" else [p.field]
        verdicts = None
        codes: list = [None] * len(ids)
        for f in fields:
            v, c = language_lib.classify(t[f].to_pylist(), p.language, candidates=p.candidates,
                                         min_relative_distance=p.min_relative_distance,
                                         min_chars=p.min_chars, max_chars=p.max_chars)
            ctx.heartbeat()
            # both: "other" wins over "abstain", which wins over "keep"
            verdicts = v if verdicts is None else [max(a, b, key=("keep", "abstain", "other").index)
                                                   for a, b in zip(verdicts, v)]
            codes = [x if x is not None else y for x, y in zip(codes, c)]
    else:
        verdicts, codes = ["keep"] * len(ids), [None] * len(ids)
    kept = [v == "keep" or (v == "abstain" and p.abstain == "keep") for v in verdicts]
    pq.write_table(pa.table({"id": ids, "source": sources, "verdict": verdicts,
                             "detected": pa.array(codes, pa.string()), "kept": kept}),
                   ctx.out / "verdicts.parquet")
    before = _survivors(ctx, "quality")
    here = [(s, v, k) for i, s, v, k in zip(ids, sources, verdicts, kept) if i in before]
    removed = {"other_language": _counts(s for s, v, k in here if v == "other"),
               "abstained": _counts(s for s, v, k in here if v == "abstain" and not k)}
    funnel = _write_funnel(ctx.out, "language", _counts(s for s, _, _ in here),
                           _counts(s for s, _, k in here if k), removed,
                           abstained=_counts(s for s, v, _ in here if v == "abstain"),
                           detected=dict(Counter(c or "none" for i, c in zip(ids, codes)
                                                 if i in before).most_common(10)),
                           language=p.language if p.enabled else None)
    return _summary(funnel)


# ----------------------------------------------------------------------------- 4. dedup

def _dedup(ctx, p, table: pa.Table, keep: list[bool], evals: pa.Table, quality_of: dict):
    """The dedup library on the rows of `table` marked in `keep`, against every eval item."""
    def texts_of(tab):
        pr = tab["prompt"].to_pylist()
        if p.field == "prompt":
            return pr
        return [a + "\n" + b for a, b in zip(pr, tab["response"].to_pylist())]

    all_ids, all_texts = table["id"].to_pylist(), texts_of(table)
    ids = [i for i, k in zip(all_ids, keep) if k]
    texts = [t for t, k in zip(all_texts, keep) if k]
    with stage_errors("dedup"):
        res = dedup_lib.deduplicate(
            ids, texts, [quality_of[i] for i in ids], eval_ids=evals["id"].to_pylist(),
            eval_texts=texts_of(evals), threshold=p.threshold, ngram=p.ngram, num_perm=p.num_perm,
            bands=p.bands, seed=p.seed, backend=p.backend, contamination=p.contamination,
            heartbeat=lambda done: ctx.progress(done, len(texts), "sample"))
    return ids, res


def dedup(ctx) -> dict:
    """Contamination, exact and near duplicates among the language survivors (the pipeline), and
    once more on the raw pool (the dedup-only ablation). Every removal names its representative."""
    p = ctx.params.dedup
    t = _table(ctx, "collect", "samples.parquet", ["id", "source", "prompt", "response"])
    evals = _table(ctx, "collect", "eval.parquet", ["id", "source", "prompt", "response"])
    q = _table(ctx, "quality", "verdicts.parquet", ["id", "quality"])
    quality_of = dict(zip(q["id"].to_pylist(), q["quality"].to_pylist()))
    source_of = dict(zip(t["id"].to_pylist(), t["source"].to_pylist()))
    survivors = _survivors(ctx, "quality") & _survivors(ctx, "language")
    outs = {}
    for name, keep in (("pipeline", [i in survivors for i in t["id"].to_pylist()]),
                       ("raw", [True] * t.num_rows)):
        ids, res = _dedup(ctx, p, t, keep, evals, quality_of)
        removed_ids = {ids[r.index] for r in res.removed}
        pq.write_table(pa.table({
            "id": ids, "source": [source_of[i] for i in ids],
            "kept": [i not in removed_ids for i in ids]}), ctx.out / f"verdicts_{name}.parquet")
        pq.write_table(pa.table({
            "id": [ids[r.index] for r in res.removed],
            "source": [source_of[ids[r.index]] for r in res.removed],
            "rule": [r.rule for r in res.removed],
            "representative": [r.representative for r in res.removed],
            "similarity": pa.array([r.similarity for r in res.removed], pa.float64())}),
            ctx.out / f"removed_{name}.parquet")
        outs[name] = (ids, res, removed_ids)
    # the pipeline's verdicts are this stage's verdicts
    (ctx.out / "verdicts.parquet").write_bytes((ctx.out / "verdicts_pipeline.parquet").read_bytes())
    ids, res, removed_ids = outs["pipeline"]
    removed: dict[str, Counter] = defaultdict(Counter)
    for r in res.removed:
        removed[r.rule][source_of[ids[r.index]]] += 1
    contaminated = [{"id": ids[r.index], "eval_item": r.representative, "similarity": round(r.similarity, 4)}
                    for r in res.removed if r.rule == "contamination"]
    raw_removed: dict[str, Counter] = defaultdict(Counter)
    for r in outs["raw"][1].removed:
        raw_removed[r.rule][source_of[outs["raw"][0][r.index]]] += 1
    funnel = _write_funnel(
        ctx.out, "dedup", _counts(source_of[i] for i in ids),
        _counts(source_of[i] for i in ids if i not in removed_ids),
        {rule: removed[rule] for rule in ("contamination", "exact", "near") if rule in removed},
        clusters=len(res.clusters), largest_cluster=max((len(c) for c in res.clusters), default=0),
        candidate_pairs=res.n_candidates, verified_pairs=res.n_verified,
        contamination_examples=contaminated[:20], contaminated=len(contaminated),
        raw_pool={rule: dict(by) for rule, by in raw_removed.items()},
        params={"threshold": p.threshold, "ngram": p.ngram, "num_perm": p.num_perm,
                "bands": p.bands, "backend": p.backend, "field": p.field})
    return {**_summary(funnel), "clusters": len(res.clusters), "contaminated": len(contaminated)}


# ----------------------------------------------------------------------------- 5. select

def select(ctx) -> dict:
    """The arms' training sets: equal size, equal token budget, seeded orders."""
    p = ctx.params.select
    t = _table(ctx, "collect", "samples.parquet")
    q = _table(ctx, "quality", "verdicts.parquet", ["id", "quality", "prompt_tokens", "response_tokens"])
    ids = t["id"].to_pylist()
    quality_of = dict(zip(q["id"].to_pylist(), q["quality"].to_pylist()))
    tok = dict(zip(q["id"].to_pylist(), (a + b for a, b in zip(q["prompt_tokens"].to_pylist(),
                                                                 q["response_tokens"].to_pylist()))))
    tokens = [tok[i] for i in ids]
    passed_q, passed_l = _survivors(ctx, "quality"), _survivors(ctx, "language")
    dd = Path(ctx.inputs["dedup"])
    pipe = pq.read_table(dd / "verdicts_pipeline.parquet", columns=["id", "kept"])
    curated = {i for i, k in zip(pipe["id"].to_pylist(), pipe["kept"].to_pylist()) if k}
    raw = pq.read_table(dd / "verdicts_raw.parquet", columns=["id", "kept"])
    dedup_raw = {i for i, k in zip(raw["id"].to_pylist(), raw["kept"].to_pylist()) if k}
    rr = pq.read_table(dd / "removed_raw.parquet", columns=["id", "rule"])
    contaminated = {i for i, r in zip(rr["id"].to_pylist(), rr["rule"].to_pylist()) if r == "contamination"}

    members = {"curated": curated, "random": set(ids), "quality_only": passed_q,
               "language_only": passed_l, "dedup_only": dedup_raw}
    pools = {}
    for arm in p.arms:
        allowed = [k for k, i in enumerate(ids) if i in members[arm] and i not in contaminated]
        if arm == "curated":
            pools[arm] = sorted(allowed, key=lambda k: (-quality_of[ids[k]], ids[k]))
        else:
            pools[arm] = [allowed[j] for j in select_lib.seeded_order(len(allowed), p.seed, arm)]
    with stage_errors("select"):
        chosen = select_lib.choose(pools, tokens, p.size, p.token_budget, p.tolerance)
    (ctx.out / "arms").mkdir()
    sets = {}
    for arm, c in chosen.items():
        pq.write_table(t.take(c.indices).append_column("tokens", pa.array([tokens[k] for k in c.indices],
                                                                         pa.int64())),
                       ctx.out / "arms" / f"{arm}.parquet")
        sets[arm] = {"size": len(c.indices), "tokens": c.tokens, "token_budget": c.budget,
                     "swaps": c.swaps, "pool": c.pool,
                     "sources": _counts(t["source"][k].as_py() for k in c.indices),
                     "mean_quality": round(sum(quality_of[ids[k]] for k in c.indices) / max(1, len(c.indices)), 4)}
    (ctx.out / "sets.json").write_text(json.dumps(sets, indent=1, sort_keys=True))
    src = dict(zip(ids, t["source"].to_pylist()))
    funnel = _write_funnel(ctx.out, "select", _counts(src[i] for i in curated if i not in contaminated),
                           sets.get("curated", {}).get("sources", {}),
                           {"not_selected": dict(Counter(src[i] for i in curated if i not in contaminated)
                                                 - Counter(sets.get("curated", {}).get("sources", {})))},
                           sets=sets)
    return {"arms": {a: {"size": s["size"], "tokens": s["tokens"]} for a, s in sets.items()},
            **_summary(funnel)}
