"""The `ilm` recipe: infilling language models (Donahue, Lee and Liang, ACL 2020, "Enabling Language
Models to Fill in the Blanks").

Stages: prepare -> tokenizer -> examples (per arm's train_level) and testset (shared by all arms)
-> train -> evaluate, plus the unigram baseline. Params: params.py; stage functions: stages.py;
library modules: documents, tokenizer, masking, examples, model, train, evaluate, unigram, infill;
the report's integrity hook: integrity.py. docs/recipes/ilm.md and ilm-model.md describe them.
"""

from __future__ import annotations

from fairtrial.recipes.api import Metric, Recipe, Resources, Stage
from fairtrial.recipes.ilm import stages
from fairtrial.recipes.ilm.documents import input_files
from fairtrial.recipes.ilm.integrity import integrity
from fairtrial.recipes.ilm.params import IlmParams, oom_policy

METRICS = (  # the evaluate stage's per-document perplexities (kinds: evaluate.METRIC_KINDS)
    Metric("infill_ppl", "lower", "geomean",
           "perplexity of the infilled answer tokens (end tokens excluded), per test document"),
    Metric("infill_ppl_with_end", "lower", "geomean",
           "perplexity of the answer tokens and their <|end_infill|> tokens, per test document"),
    Metric("context_ppl", "lower", "geomean",
           "perplexity of the masked context tokens before <|start_infill|>, per test document"),
)

RECIPE = Recipe(
    name="ilm",
    params=IlmParams,
    description="Infilling language models: does a model trained on one level fill blanks in that "
                "level's texts better than a general one?",
    stages=(
        Stage("prepare", stages.prepare, version="1", params=("data", "split"),
              input_files=input_files, resources=Resources(cpus=1, memory_gb=1)),
        Stage("tokenizer", stages.tokenizer, version="1", params=("tokenizer",),
              needs=("prepare",), resources=Resources(cpus=1, memory_gb=1)),
        Stage("examples", stages.examples, version="3", params=("masking", "train_level"),
              needs=("prepare", "tokenizer"), resources=Resources(cpus=2, memory_gb=2)),
        Stage("testset", stages.testset, version="4", params=("testset",),
              needs=("prepare", "tokenizer"), resources=Resources(cpus=1, memory_gb=1)),
        Stage("train", stages.train, version="1", params=("model", "train"),
              needs=("examples", "tokenizer"), seeded=True, checkpoints=True, oom=oom_policy,
              resources=Resources(cpus=1, gpus=0, memory_gb=2)),
        Stage("evaluate", stages.evaluate, version="2", params=("eval",),
              needs=("train", "testset", "tokenizer"), emits_scores=True,
              resources=Resources(cpus=1, gpus=0, memory_gb=1)),
        Stage("baseline", stages.baseline, version="2", params=("train_level",),
              needs=("prepare", "testset", "tokenizer"), emits_scores=True,
              resources=Resources(cpus=1, gpus=0, memory_gb=1)),
    ),
    metrics=tuple(METRICS),
    integrity=integrity,
)
