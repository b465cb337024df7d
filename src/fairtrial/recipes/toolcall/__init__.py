"""The `toolcall` recipe: can a LoRA-tuned small model with a format prefix replace a large API
model on tool calls and structured JSON? (issue 10; docs/recipes/toolcall.md)

Stages: model (the named model converted once) and prepare (items of each track) -> render (prompts
through the chat template, the format gate) -> train (LoRA, or nothing for a prompt-only arm) ->
generate -> score, plus the trivial baselines. External systems' raw outputs are scored by the same
scorer through `fairtrial import --outputs` (`score_outputs`); prepare and baseline also run for
each external arm (`external_stages`), so a study of API models alone gets its baselines too.
Params: params.py; stages: stages.py; parsers and scorer: parsing.py, scoring.py, evaluate.py;
integrity hook: integrity.py.
"""

from __future__ import annotations

from fairtrial.recipes.api import Metric, Recipe, Resources, Stage
from fairtrial.recipes.toolcall import stages
from fairtrial.recipes.toolcall.data import input_files
from fairtrial.recipes.toolcall.integrity import integrity, report_sections, score_outputs
from fairtrial.recipes.toolcall.params import ToolcallParams, oom_policy
from fairtrial.recipes.toolcall.scoring import STRUCTURED_METRICS, TOOLCALL_METRICS

# the metrics: each score of each track, under the strict and the tolerant parser
_PROPORTIONS = ("json_valid", "call_valid", "schema_valid", "tool_name_acc", "call_match",
                "exact_match")
_ABOUT = {
    "json_valid": "the answer parses (wrapper with a JSON object body / a JSON object)",
    "call_valid": "toolcall: every call names a declared tool with declared parameters only",
    "schema_valid": "structured: exactly query (string), tool_name (string), arguments (object)",
    "tool_name_acc": "the tool names equal the reference's (as a multiset)",
    "args_f1": "F1 over (call, argument) pairs, values compared after type coercion",
    "field_f1": "structured: F1 over leaf paths of the JSON object",
    "call_match": "toolcall: every call matches a reference call (name and arguments)",
    "exact_match": "the parsed answer equals the reference exactly (no coercion)",
    "f1": "the track's endpoint: Args F1 on toolcall, Field F1 on structured",
}

def _metrics() -> list[Metric]:
    names = list(dict.fromkeys(("f1",) + TOOLCALL_METRICS + STRUCTURED_METRICS))
    out = []
    for suffix, how in (("", "strict parser"), ("_tolerant", "tolerant parser")):
        for n in names:
            # every score is in [0, 1] with higher better: a missing answer earns 0
            out.append(Metric(n + suffix, "higher",
                              "proportion" if n in _PROPORTIONS else "mean",
                              f"{_ABOUT[n]} ({how})", missing=0.0))
    out.append(Metric("repairs", "lower", "mean", "repairs the tolerant parser made per item"))
    return out


METRICS = _metrics()


RECIPE = Recipe(
    name="toolcall",
    params=ToolcallParams,
    description="Tool calls and structured JSON: does a LoRA-tuned small model (with or without a "
                "format prefix) reach an API model's Args F1 / Field F1?",
    stages=(
        Stage("model", stages.model, version="1", params=("model",),
              resources=Resources(cpus=1, memory_gb=2)),
        Stage("prepare", stages.prepare, version="1", params=("data",), input_files=input_files,
              resources=Resources(cpus=1, memory_gb=0.5)),
        Stage("render", stages.render, version="1", params=("prompt",),
              needs=("model", "prepare"), resources=Resources(cpus=1, memory_gb=1)),
        Stage("train", stages.train, version="1", params=("model", "train"),
              needs=("model", "render"), seeded=True, checkpoints=True, oom=oom_policy,
              resources=Resources(cpus=2, memory_gb=4)),
        Stage("generate", stages.generate, version="1", params=("generate",),
              needs=("model", "render", "train"), seeded=True,
              resources=Resources(cpus=2, memory_gb=3)),
        Stage("score", stages.score, version="1", needs=("prepare", "generate"),
              emits_scores=True, resources=Resources(cpus=1, memory_gb=0.5)),
        Stage("baseline", stages.baseline, version="1", needs=("prepare",), emits_scores=True,
              resources=Resources(cpus=1, memory_gb=0.5)),
    ),
    metrics=tuple(METRICS),
    integrity=integrity,
    score_outputs=score_outputs,
    report_sections=report_sections,
    # an external system (an API model's outputs, `fairtrial import --outputs`) is checked
    # against the same trivial baselines, on the same items, as a trained arm
    external_stages=("prepare", "baseline"),
)
