"""lvm: next-sentence-vector prediction, architectures x training-set size.

A document becomes a sequence of sentence vectors; a model reads k of them and predicts the next.
The recipe answers "does more training data help these architectures?" honestly: documents (not
windows) are split, by a seed, with topic groups kept whole; training-size arms are nested subsets;
every model is scored next to trivial baselines (copy the last vector, the mean of the context, a
ridge regression) on the same test windows, per window, so the analysis can put intervals on it.

Library modules (usable without the engine): corpus, split, embedding, windows, models, losses,
training, scoring. Stage functions: stages. Params: params.LvmParams.
"""

from __future__ import annotations

from typing import Any

from fairtrial.recipes.api import Metric, Recipe, Resources, Stage
from fairtrial.recipes.lvm import stages
from fairtrial.recipes.lvm.integrity import integrity as _integrity
from fairtrial.recipes.lvm.params import LvmParams, parse


def _data_files(params: dict[str, Any]):
    """Called by the planner (before any stage runs): a missing data set is bad input."""
    from fairtrial.errors import UserError
    from fairtrial.recipes.lvm.corpus import resolve_source

    try:
        return [resolve_source(parse(params).data.source)]
    except ValueError as e:
        raise UserError(f"params.data: {e}") from e


def _halve_batch(params: dict[str, Any]) -> dict[str, Any] | None:
    """OOM policy: halve train.batch_size, double train.grad_accum (same effective batch; note
    that InfoNCE then sees fewer in-batch negatives per micro-batch)."""
    tr = dict(params.get("train") or {})
    mb = int(tr.get("batch_size", 256))
    if mb <= 8:
        return None
    tr["batch_size"] = mb // 2
    tr["grad_accum"] = int(tr.get("grad_accum", 1)) * 2
    return {**params, "train": tr}


RECIPE = Recipe(
    name="lvm",
    params=LvmParams,
    description="Next-sentence-vector prediction: architectures x training-set size, with "
                "document-level splits, nested training subsets and trivial baselines.",
    stages=(
        Stage("prepare", stages.prepare, version="1", params=("data", "split"),
              input_files=_data_files, resources=Resources(cpus=1, memory_gb=1)),
        Stage("embed", stages.embed, version="1", params=("embed",), needs=("prepare",),
              resources=Resources(cpus=2, memory_gb=2)),
        Stage("windows", stages.windows, version="1",
              params=("window", "train_fraction"), needs=("prepare",),
              resources=Resources(cpus=1, memory_gb=0.5)),
        Stage("train", stages.train, version="1", params=("arch", "model", "train"),
              needs=("embed", "windows"), seeded=True, checkpoints=True, oom=_halve_batch,
              resources=Resources(cpus=1, memory_gb=1.5)),
        Stage("baselines", stages.baselines, version="1", params=("baselines",),
              needs=("embed", "windows"), resources=Resources(cpus=1, memory_gb=1)),
        Stage("evaluate", stages.evaluate, version="1", params=(),
              needs=("prepare", "embed", "windows", "train", "baselines"), emits_scores=True,
              resources=Resources(cpus=1, memory_gb=1.5)),
    ),
    metrics=(
        Metric("mrr", "higher", "mean", "reciprocal rank of the true next unit among all distinct "
               "test units (retrieval by cosine)"),
        Metric("cosine", "higher", "mean", "cosine between predicted and true next vector"),
        Metric("recall_at_1", "higher", "mean", "true next unit ranked first"),
        Metric("recall_at_5", "higher", "mean", "true next unit in the top 5"),
        Metric("rank", "lower", "median", "rank of the true next unit (1 = best)"),
    ),
    integrity=_integrity,
)
