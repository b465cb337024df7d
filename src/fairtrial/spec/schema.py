"""The study file's own schema (pydantic models; recipe params are validated by the recipe's
model) and the limits on what it may name."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SEED = 2**63
"""Seeds are 0 <= seed < 2**63: numpy's generators refuse negative seeds, and the record store
keeps a seed in a signed 64-bit integer."""
MAX_STUDY_NAME = 100
"""A study name names folders and lock files (`locks/study-<name>.lock`, at most 255 bytes)."""
MAX_ARM_NAME = 200


def unprintable(text: str) -> str | None:
    """The first control or line-separator character in `text`, as repr, else None."""
    import unicodedata

    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return repr(ch)
    return None


EVALUATION_ONLY = "scores"
"""The built-in recipe of a study file without `recipe` (fairtrial.recipes.evaluation_only)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class EndpointSpec(_Strict):
    metric: str
    direction: Literal["lower", "higher"] | None = None
    secondary: list[str] = Field(default_factory=list)


class MetricSpec(_Strict):
    """A metric declared by the study file (evaluation-only studies, or metrics only a study's
    external arms have): `[metrics.accuracy] direction = "higher", aggregation = "proportion"`."""
    direction: Literal["lower", "higher"]
    aggregation: Literal["mean", "geomean", "proportion"] = "mean"
    description: str = ""
    missing: float | None = Field(None, allow_inf_nan=False)
    """The value a missing item counts as in the missing-as-failures view (e.g. 0.0 for an F1);
    0/1 metrics need none."""


class DecisionSpec(_Strict):
    min_effect: float = Field(0.0, ge=0, allow_inf_nan=False)
    effect: Literal["absolute", "relative"] = "relative"
    alpha: float = Field(0.05, gt=0, lt=1)
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    compare: Literal["control", "all-pairs"] = "control"
    test: Literal["superiority", "non_inferiority", "equivalence"] = "superiority"
    """superiority: better by more than min_effect; non_inferiority: not worse by more than
    margin; equivalence: within margin either way (docs/verdicts.md)."""
    margin: float | None = Field(None, allow_inf_nan=False)
    """non_inferiority / equivalence: the margin (>= 0) on the scale of `effect`."""

    @field_validator("margin")
    @classmethod
    def _margin(cls, v):
        if v is not None and v < 0:
            raise ValueError(f"margin must be >= 0 (got {v:g}): the largest difference that still "
                             "counts as no worse (or as the same), on the scale of effect; "
                             "e.g. margin = 0.05")
        return v


class ResourceSpec(_Strict):
    # finite and bounded: the scheduler compares them with the machine's; Ray refuses inf
    cpus: float = Field(1, gt=0, le=4096, allow_inf_nan=False)
    gpus: int = Field(0, ge=0, le=256)
    memory_gb: float = Field(0.5, gt=0, le=100_000, allow_inf_nan=False)


class AnalysisSpec(_Strict):
    """Study shapes the report knows (docs/verdicts.md)."""
    min_items: int = Field(30, ge=1)
    own_eval_set: str | dict[str, str] | None = None
    """cross-evaluation: each arm's own eval set, as a table arm -> set or a template
    over the arm's params such as "{train_level}"."""
    size_param: str | None = None
    """data scaling: the param that holds the training-set size."""
    group_param: str | None = None
    targets: dict[str, float] | None = None
    """decision tree: metric -> target the arm's mean must meet."""
    pairwise_metric: str | None = None
    pairwise_reference: str | None = None


class StudyFile(_Strict):
    name: str | None = None
    question: str = Field(min_length=1)
    recipe: str | None = None
    """None: an evaluation-only study (the built-in recipe "scores": external arms only)."""
    replicates: list[int] | None = Field(None, min_length=1)
    """Required when the study trains arms; an evaluation-only study defaults to [0]."""
    control: str | None = None
    external_arms: list[str] = Field(default_factory=list)
    """Arms whose item scores come from elsewhere (`fairtrial import`), e.g. a hosted API model."""
    endpoint: EndpointSpec
    metrics: dict[str, MetricSpec] = Field(default_factory=dict)
    """Metrics the study declares itself (name -> direction, aggregation), beside the recipe's."""
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    params: dict[str, Any] = Field(default_factory=dict)
    arms: list[dict[str, Any]] = Field(default_factory=list)
    grid: dict[str, Any] | None = None
    resources: dict[str, ResourceSpec] = Field(default_factory=dict)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)

    @field_validator("replicates", mode="before")
    @classmethod
    def _ints(cls, v):
        if isinstance(v, list):
            for i, s in enumerate(v):
                if not isinstance(s, int) or isinstance(s, bool):
                    raise ValueError(f"seeds must be integers; item {i} is {s!r}")
                if not 0 <= s < MAX_SEED:
                    raise ValueError(f"seeds must be 0 <= seed < 2**63; item {i} is {s}")
        return v

    @field_validator("replicates")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct; got {v}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"{v!r} is not a usable study name; use letters, digits, _ . -")
        if v is not None and len(v) > MAX_STUDY_NAME:
            raise ValueError(f"the study name is {len(v)} characters long; at most {MAX_STUDY_NAME}")
        return v

    @field_validator("question")
    @classmethod
    def _one_line(cls, v):
        bad = unprintable(v)
        if bad:
            raise ValueError(f"the question holds the control character {bad}; it is the report's "
                             "first line: write it on one line")
        return v

