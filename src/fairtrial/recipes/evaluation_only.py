"""`scores`: the built-in recipe of evaluation-only studies.

It has no stages, no params and no metrics of its own: every arm of such a study is an external
arm (`external_arms`), whose per-item scores come in through `fairtrial import`, and the study file
declares the metrics itself:

    question = "Does the larger system beat the 6B one on GSM8K?"
    external_arms = ["gpt-6b", "gpt-175b"]
    control = "gpt-6b"

    [metrics]
    accuracy = { direction = "higher", aggregation = "proportion" }

    [endpoint]
    metric = "accuracy"

A study file without `recipe` uses this one (writing `recipe = "scores"` is the same). Other
recipes' studies may declare `[metrics]` too, for metrics only their external arms have.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from fairtrial.recipes.api import Recipe


class NoParams(BaseModel):
    """An evaluation-only study trains nothing, so it has no params."""
    model_config = ConfigDict(extra="forbid")


RECIPE = Recipe(
    name="scores",
    params=NoParams,
    stages=(),
    metrics=(),
    description="Evaluation only: compares external systems from their imported per-item scores; "
                "no stages, the study file declares its [metrics].",
)
