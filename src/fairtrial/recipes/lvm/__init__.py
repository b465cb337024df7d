"""lvm: next-sentence-vector prediction, architectures x training-set size.

A document becomes a sequence of sentence vectors; a model reads k of them and predicts the next.
The recipe answers "does more training data help these architectures?" honestly: documents (not
windows) are split, by a seed, with topic groups kept whole; training-size arms are nested subsets;
every model is scored next to trivial baselines (copy the last vector, the mean of the context, a
ridge regression) on the same test windows, per window, so the analysis can put intervals on it.

Params: params.py; stage functions: stages.py; library modules (usable without the engine):
corpus, split, windows, models, losses, training, scoring, with fairtrial.data (readers, the
splitter) and fairtrial.ml (embed, checkpoints, schedules) underneath; integrity.py.
"""

from __future__ import annotations

from fairtrial.recipes.api import Metric, Recipe, Resources, Stage
from fairtrial.recipes.lvm import stages
from fairtrial.recipes.lvm.corpus import input_files
from fairtrial.recipes.lvm.integrity import integrity
from fairtrial.recipes.lvm.params import LvmParams, oom_policy

RECIPE = Recipe(
    name="lvm",
    params=LvmParams,
    description="Next-sentence-vector prediction: architectures x training-set size, with "
                "document-level splits, nested training subsets and trivial baselines.",
    stages=(
        # version 2: duplicates (exact or normalised texts) never straddle splits
        # (fairtrial.data.split), and documents are read by fairtrial.data.readers
        # version 3: splits are named train/valid/test (was val), and the stage "baseline" with
        # params "baseline" (was baselines): the words of every recipe
        Stage("prepare", stages.prepare, version="3", params=("data", "split"),
              input_files=input_files, resources=Resources(cpus=1, memory_gb=1)),
        Stage("embed", stages.embed, version="1", params=("embed",), needs=("prepare",),
              resources=Resources(cpus=2, memory_gb=2)),
        Stage("windows", stages.windows, version="2",
              params=("window", "train_fraction"), needs=("prepare",),
              resources=Resources(cpus=1, memory_gb=0.5)),
        Stage("train", stages.train, version="2", params=("arch", "model", "train"),
              needs=("embed", "windows"), seeded=True, checkpoints=True, oom=oom_policy,
              resources=Resources(cpus=1, memory_gb=1.5)),
        Stage("baseline", stages.baseline, version="2", params=("baseline",),
              needs=("embed", "windows"), resources=Resources(cpus=1, memory_gb=1)),
        Stage("evaluate", stages.evaluate, version="2", params=(),
              needs=("prepare", "embed", "windows", "train", "baseline"), emits_scores=True,
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
    integrity=integrity,
)
