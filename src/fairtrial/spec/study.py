"""The validated study: what `validate` returns and everything downstream reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairtrial.recipes.api import Recipe, Resources
from fairtrial.spec.schema import DecisionSpec, EndpointSpec


@dataclass
class Arm:
    name: str
    params: dict[str, Any]
    """Resolved recipe params (defaults filled in, JSON-able): what the cache keys see."""
    overrides: dict[str, Any]
    origin: str
    """Where the arm was declared: "arms[2]" or "grid"."""


@dataclass
class Spec:
    path: Path
    name: str
    question: str
    recipe: Recipe
    replicates: list[int]
    control: str | None
    external_arms: list[str]
    endpoint: EndpointSpec
    decision: DecisionSpec
    params: dict[str, Any]
    arms: list[Arm]
    resources: dict[str, Resources]
    analysis: dict[str, Any]
    digest: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    external_params: dict[str, Any] | None = None
    """The resolved recipe params the external arms' planned stages run with (the study's own
    [params], no arm overrides), when the recipe plans stages for external arms
    (`Recipe.external_stages`, e.g. toolcall's prepare and trivial baselines); else None."""

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)

    def resources_for(self, stage: str) -> Resources:
        return self.resources.get(stage) or self.recipe.stage(stage).resources

    @property
    def planned_external_arms(self) -> list[str]:
        """The external arms the plan runs the recipe's `external_stages` for (all of them when
        the recipe declares such stages, else none)."""
        return list(self.external_arms) if self.external_params is not None else []

    @property
    def evaluation_only(self) -> bool:
        """Nothing to run: every arm is external (its scores come from `fairtrial import`) and
        the recipe plans no stage for external arms (a toolcall study of external arms only
        still runs prepare and the trivial baselines, so it is not evaluation-only)."""
        return not self.arms and not self.planned_external_arms

    @property
    def direction(self) -> str:
        return self.endpoint.direction or self.recipe.metric(self.endpoint.metric).direction
