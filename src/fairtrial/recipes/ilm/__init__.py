"""The `ilm` recipe: infilling language models (Donahue, Lee and Liang, ACL 2020, "Enabling Language
Models to Fill in the Blanks").

Stages: prepare -> tokenizer -> examples (per arm's train_level) and testset (shared by all arms)
-> train -> evaluate, plus the unigram baseline. The data stages live in stages_data.py, the model
stages in stages_model.py; the data side works on its own when the model side is absent.
"""

from __future__ import annotations

from fairtrial.recipes.api import Recipe, Resources, Stage
from fairtrial.recipes.ilm import stages_data as _d
from fairtrial.recipes.ilm.integrity import integrity as _integrity
from fairtrial.recipes.ilm.params import IlmParams

DATA_STAGES = (
    Stage("prepare", _d.prepare, version="1", params=("data", "split"),
          input_files=_d.prepare_input_files, resources=Resources(cpus=1, memory_gb=1)),
    Stage("tokenizer", _d.tokenizer, version="1", params=("tokenizer",), needs=("prepare",),
          resources=Resources(cpus=1, memory_gb=1)),
    Stage("examples", _d.examples, version="3", params=("masking", "train_level"),
          needs=("prepare", "tokenizer"), resources=Resources(cpus=2, memory_gb=2)),
    Stage("testset", _d.testset, version="4", params=("testset",),
          needs=("prepare", "tokenizer"), resources=Resources(cpus=1, memory_gb=1)),
)

try:  # the model side (train, evaluate, baseline) lands separately; the data side works alone
    from fairtrial.recipes.ilm.stages_model import METRICS, MODEL_STAGES
except ImportError:  # pragma: no cover - only before stages_model.py exists
    METRICS, MODEL_STAGES = (), ()

RECIPE = Recipe(
    name="ilm",
    params=IlmParams,
    stages=(*DATA_STAGES, *MODEL_STAGES),
    metrics=tuple(METRICS),
    description="Infilling language models: does a model trained on one level fill blanks in that "
                "level's texts better than a general one?",
    integrity=_integrity,
)
