"""curate: does a curated instruction set make a better student than an uncurated one of the same size?

Part 1: collect -> quality -> language -> dedup -> select builds the arms' training sets
(curated, random, single-filter ablations), equal in size and token budget, with every removal
counted per source and rule (the report's funnel) and contamination against the declared
evaluation sets removed from every arm. Part 2: teacher (optional distillation) -> train (LoRA)
-> merge (checked) -> quantize (optional) -> evaluate (GSM8K accuracy, maj@k, consistency, judged
win/tie/loss), ending in the verdict curated vs random (docs/recipes/curate-distill.md).

Params: params.py; stage functions: stages/curation.py (part 1), stages/distill.py (part 2);
library modules (usable without the engine): collect, quality, language, dedup, select, gsm8k, sampling, judge,
teacher; the report's sections: funnel.py, distill_report.py; integrity.py.
"""

from __future__ import annotations

from fairtrial.recipes.api import Metric, Recipe, Resources, Stage
from fairtrial.recipes.curate.stages import curation, distill
from fairtrial.recipes.curate.collect import input_files
from fairtrial.recipes.curate.distill_report import report_sections
from fairtrial.recipes.curate.integrity import integrity
from fairtrial.recipes.curate.params import CurateParams, oom_policy

RECIPE = Recipe(
    name="curate",
    params=CurateParams,
    description="Curate an instruction set (quality, language, near-duplicates, contamination) "
                "into training sets of equal size and token budget: curated vs random vs "
                "single-filter ablations.",
    stages=(
        Stage("collect", curation.collect, version="1", params=("sources", "eval_sets", "on_error"),
              input_files=input_files, resources=Resources(cpus=1, memory_gb=1)),
        Stage("quality", curation.quality, version="1", params=("quality",), needs=("collect",),
              resources=Resources(cpus=1, memory_gb=1)),
        Stage("language", curation.language, version="1", params=("language",),
              needs=("collect", "quality"), resources=Resources(cpus=1, memory_gb=1.5)),
        Stage("dedup", curation.dedup, version="1", params=("dedup",),
              needs=("collect", "quality", "language"), resources=Resources(cpus=1, memory_gb=2)),
        Stage("select", curation.select, version="1", params=("select",),
              needs=("collect", "quality", "language", "dedup"),
              resources=Resources(cpus=1, memory_gb=1)),
        Stage("teacher", distill.teacher, version="1", params=("distill", "train_set", "teacher"),
              needs=("select",), resources=Resources(cpus=2, memory_gb=3)),
        Stage("train", distill.train, version="1", params=("distill", "student", "train"),
              needs=("teacher",), seeded=True, checkpoints=True, oom=oom_policy,
              resources=Resources(cpus=2, memory_gb=4)),
        Stage("merge", distill.merge, version="1", params=("distill", "student", "merge"),
              needs=("collect", "train"), resources=Resources(cpus=2, memory_gb=3)),
        Stage("quantize", distill.quantize, version="1", params=("distill", "quantize"),
              needs=("merge",), resources=Resources(cpus=1, memory_gb=2)),
        Stage("reference", distill.reference, version="1",
              params=("distill", "teacher", "evaluate", "judge"),
              resources=Resources(cpus=2, memory_gb=3)),
        Stage("evaluate", distill.evaluate, version="2",
              params=("distill", "teacher", "student", "evaluate", "judge"),
              needs=("merge", "quantize", "reference"), emits_scores=True,
              resources=Resources(cpus=2, memory_gb=3)),
    ),
    metrics=(
        Metric("accuracy", "higher", "proportion",
               "GSM8K accuracy of the arm's student, greedy, documented answer extraction"),
        Metric("maj_at_k", "higher", "mean",
               "maj@k over evaluate.samples sampled answers (exact mean over k-subsets)"),
        Metric("consistency", "higher", "mean",
               "share of the sampled answers that agree with the item's modal answer"),
        Metric("unparsed", "lower", "proportion", "greedy answers with no number (scored wrong)"),
        Metric("judged_win", "higher", "mean",
               "judged score against the data set's solutions, both orders (win 1, tie 0.5, "
               "loss 0); inconsistent pairs and errors left out and counted"),
        Metric("judged_win_as_tie", "higher", "mean",
               "the sensitivity: judged score with inconsistent pairs as ties"),
        Metric("judged_inconsistent", "lower", "proportion",
               "judged pairs (errors left out) whose verdict flipped with the order of the "
               "answers (1) or not (0)"),
        Metric("judged_error", "lower", "proportion",
               "judged pairs with no verdict in one order after the judge's retries (1) or a "
               "verdict in both (0); every judged item has a row"),
    ),
    integrity=integrity,
    report_sections=report_sections,
)
