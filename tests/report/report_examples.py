"""Three synthetic studies, one per study shape, shared by the report tests and render_png.py."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairtrial.analysis import (AnalysisContext, CrossEval, DataScaling, Decision, DecisionTree,
                                Endpoint, Pairwise, StudyDesign, analyze)
from fairtrial.analysis.synthetic import make_scores
from fairtrial.scores import eval_set_digest

N_RESAMPLES = 2_000     # enough for a stable picture, fast in tests

PROVENANCE = {
    "code_version": "fairtrial 0.1.0 (git c1296ad)",
    "hardware": "2 CPU cores, no GPU",
    "data": {"cefr-sp": "sha256:4f0c1e...", "eval sets": "sha256:9b2d77..."},
    "configs": {"model": {"n_layer": 2, "n_embd": 64}, "train": {"steps": 200}},
}


def cefr_cross_eval(complete: bool = True):
    sets = ["A1", "A2", "B1"]
    shifts = {"general": 0.0}
    for s in sets:
        shifts[f"{s}-specialist"] = {e: (-0.6 if e == s else 0.3) for e in sets}
    df = pd.concat([
        make_scores(shifts, eval_sets=sets, n_items=150, metric="infill_ppl", mean=20, seed_sd=0.05,
                    seeds=(0, 1, 2, 3), baselines={"unigram": 8.0}),
        make_scores(shifts, eval_sets=sets, n_items=150, metric="context_ppl", mean=30, seed_sd=0.05,
                    seeds=(0, 1, 2, 3), rng_seed=3),
    ])
    design = StudyDesign(
        question="Does an ILM trained on one CEFR level beat a general one on that level's texts?",
        name="cefr_specialization", arms={a: {"train_level": a.split("-")[0]} for a in shifts},
        control="general", endpoint=Endpoint("infill_ppl", "lower", ("context_ppl",)),
        decision=Decision(min_effect=0.02), metric_directions={"context_ppl": "lower"},
        cross_eval=CrossEval({f"{s}-specialist": s for s in sets}))
    ctx = AnalysisContext(
        provenance={**PROVENANCE, "per_arm": {a: {"wall_s": 118.0 + i, "cpu_h": 0.066, "gpu_h": 0.0}
                                              for i, a in enumerate(shifts)}},
        effective_params=[{"arm": "A2-specialist", "replicate": 1,
                           "declared": {"micro_batch": 32, "grad_accum": 1},
                           "effective": {"micro_batch": 16, "grad_accum": 2}}],
        complete=complete, progress={} if complete else {"done": 30, "total": 48, "running": 2})
    return analyze(df, design, ctx, n_resamples=N_RESAMPLES)


def lvm_scaling():
    archs = ["gru", "transformer"]
    sizes = [1000, 2900, 8400]
    true = {"gru": (3.0, 0.35, 0.30), "transformer": (2.6, 0.5, 0.35)}   # c, a, b in loss = c + a (n/1000)^-b
    shifts, arms = {}, {}
    for arch in archs:
        for n in sizes:
            c, a, b = true[arch]
            name = f"{arch}-{n}"
            shifts[name] = c + a * (n / 1000) ** -b - 3.0
            arms[name] = {"train_size": n, "model": {"arch": arch}}
    df = make_scores(shifts, seeds=(0, 1, 2, 3, 4), n_items=300, metric="cos_loss", mean=3.0,
                     item_sd=0.3, noise_sd=0.2, seed_sd=0.01, baselines={"copy_last": 0.9})
    design = StudyDesign(
        question="Does 2.9x more training data help these architectures?", name="lvm_scaling",
        arms=arms, endpoint=Endpoint("cos_loss", "lower"), decision=Decision(min_effect=0.01),
        data_scaling=DataScaling("train_size", "model.arch"))
    return analyze(df, design, AnalysisContext(provenance=PROVENANCE), n_resamples=N_RESAMPLES)


def toolcall_tree():
    rng = np.random.default_rng(7)
    ids = [f"p{j:03d}" for j in range(100)]
    dg = eval_set_digest(ids)
    rows = []
    rates = {"small": (0.80, 0.55), "small+prefix": (0.97, 0.70)}
    for arm, (valid, exact) in rates.items():
        for s in (0, 1, 2):
            v = (rng.random(100) < valid).astype(float)
            x = np.minimum(v, (rng.random(100) < exact / valid).astype(float))
            pref = rng.choice([1.0, 0.0, -1.0], size=100, p=[0.5, 0.2, 0.3]) if arm != "small" \
                else np.zeros(100)
            for metric, vals in (("json_valid", v), ("exact_match", x), ("judge_pref", pref)):
                rows.append(pd.DataFrame({"item_id": ids, "eval_set": "toolcall", "eval_set_digest": dg,
                                          "metric": metric, "value": vals, "system": "model",
                                          "arm": arm, "replicate": s}))
    df = pd.concat(rows, ignore_index=True)
    design = StudyDesign(
        question="Does a format prefix make the small model's tool calls good enough?",
        name="toolcall_prefix", arms={"small": {"prefix": False}, "small+prefix": {"prefix": True}},
        control="small", endpoint=Endpoint("json_valid", "higher", ("exact_match",)),
        decision=Decision(min_effect=0.05, effect="absolute"),
        metric_directions={"exact_match": "higher", "judge_pref": "higher"},
        decision_tree=DecisionTree({"json_valid": 0.95, "exact_match": 0.75}),
        pairwise=Pairwise("judge_pref"))
    return analyze(df, design, AnalysisContext(provenance=PROVENANCE), n_resamples=N_RESAMPLES)
