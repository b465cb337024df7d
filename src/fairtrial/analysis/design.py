"""What the analysis needs to know about a study: a plain copy of the validated study file.

The integrator builds a `StudyDesign` from the validated spec with `StudyDesign.from_spec` (or
builds one directly, for scores from elsewhere); nothing here re-validates the file's syntax, but
`check()` rejects designs the analysis cannot act on (a control that is not an arm, a shape option naming an unknown arm).
`AnalysisContext` carries the optional inputs of the integrity checks and the provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from fairtrial.errors import UserError
from fairtrial.stats.multiple import CORRECTIONS

Direction = Literal["lower", "higher"]
Aggregation = Literal["mean", "geomean", "median", "proportion"]
AGGREGATIONS = ("mean", "geomean", "median", "proportion")
SUPPORTED_AGGREGATIONS = ("mean", "geomean", "proportion")   # "median": declared, not analysed yet


class AnalysisInputError(UserError, ValueError):
    """Input the analysis cannot use (a missing column, NaN values, an unknown metric). The
    message says which column/arm/metric and what was expected; as a UserError the CLI prints it
    without a traceback (exit code 2)."""


@dataclass(frozen=True)
class Endpoint:
    metric: str
    direction: Direction
    secondary: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    min_effect: float = 0.0
    effect: Literal["absolute", "relative"] = "relative"
    alpha: float = 0.05
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    compare: Literal["control", "all-pairs"] = "control"
    test: Literal["superiority", "non_inferiority", "equivalence"] = "superiority"
    margin: float | None = None
    """non_inferiority / equivalence: the margin (>= 0), on the scale of `effect`."""


@dataclass(frozen=True)
class CrossEval:
    """Every model arm is scored on every eval set; `own` maps an arm to the eval set it was
    specialised for (arms without an entry, e.g. the general control, have no own set)."""
    own: Mapping[str, str]


@dataclass(frozen=True)
class DataScaling:
    """Arms differ in the training-set size `size_param` (a number in the arm's params), grouped
    by `group_param` (e.g. "model.arch"; dotted keys reach into nested params). No group: one group."""
    size_param: str
    group_param: str | None = None


@dataclass(frozen=True)
class DecisionTree:
    """Per-metric targets on the arm's mean, met when the mean is at or beyond the target in the
    metric's direction (>= for "higher", <= for "lower")."""
    targets: Mapping[str, float]


@dataclass(frozen=True)
class Pairwise:
    """A pairwise-judged metric: per item +1 (the arm wins against `reference`), 0 (tie) or -1
    (loss); any positive / zero / negative judge preference counts the same way."""
    metric: str
    reference: str | None = None     # the arm the judge compared with; default: the control


@dataclass(frozen=True)
class StudyDesign:
    question: str
    arms: Mapping[str, Mapping[str, Any]]
    """arm name -> resolved recipe params (nested dicts allowed), in the study file's order."""
    endpoint: Endpoint
    decision: Decision = field(default_factory=Decision)
    control: str | None = None
    replicates: tuple[int, ...] = ()
    metric_directions: Mapping[str, Direction] = field(default_factory=dict)
    """Direction of every metric the report shows (from the recipe's Metric declarations)."""
    metric_aggregations: Mapping[str, Aggregation] = field(default_factory=dict)
    """How each metric's item values are aggregated (the recipe's Metric.aggregation); absent =
    "mean". "geomean": every mean, difference, bootstrap and test is taken on the log scale."""
    metric_missing: Mapping[str, float] = field(default_factory=dict)
    """The value a missing item counts as in the missing-as-failures view, for metrics that
    declare one (the recipe's Metric.missing, e.g. 0.0 for an F1); 0/1 metrics need none."""
    name: str = ""
    fixed_arms: tuple[str, ...] = ()
    """Arms that are one fixed system (external arms: scores imported once). Their rows may repeat
    under every seed, which keeps them paired with trained arms seed by seed; they count as one
    replicate: their summaries, and comparisons between two of them, use one copy."""
    min_items: int = 30
    """An endpoint computed on fewer items than this is an integrity warning."""
    cross_eval: CrossEval | None = None
    data_scaling: DataScaling | None = None
    decision_tree: DecisionTree | None = None
    pairwise: Pairwise | None = None

    def direction(self, metric: str) -> Direction:
        if metric == self.endpoint.metric:
            return self.endpoint.direction
        if metric in self.metric_directions:
            return self.metric_directions[metric]
        raise AnalysisInputError(
            f"metric {metric!r}: direction unknown; declare it in the recipe's metrics "
            f"(StudyDesign.metric_directions), known: {sorted(self.metric_directions)}")

    def aggregation(self, metric: str) -> Aggregation:
        """The metric's declared aggregation; "mean" when the recipe did not say. A "proportion"
        (0/1 values) is analysed as their mean."""
        agg = self.metric_aggregations.get(metric, "mean")
        return "mean" if agg == "proportion" else agg

    def proportion(self, metric: str) -> bool:
        """Whether the metric is declared as a proportion of 0/1 item values."""
        return self.metric_aggregations.get(metric) == "proportion"

    def analysed_metrics(self) -> list[str]:
        """Every metric whose values the analysis aggregates: the endpoint, the secondary metrics
        and the decision tree's targets (a pairwise metric is counted, not aggregated)."""
        out = [self.endpoint.metric, *self.endpoint.secondary]
        if self.decision_tree is not None:
            out += list(self.decision_tree.targets)
        return list(dict.fromkeys(out))

    def check(self) -> None:
        """Raise AnalysisInputError listing every problem at once."""
        errs: list[str] = []
        arms = list(self.arms)
        if not arms:
            errs.append("arms: the design has no arms")
        if self.control is not None and self.control not in self.arms:
            errs.append(f"control: {self.control!r} is not an arm; arms: {arms}")
        for a in self.fixed_arms:
            if a not in self.arms:
                errs.append(f"external_arms: {a!r} is not an arm; arms: {arms}")
        d = self.decision
        if self.endpoint.direction not in ("lower", "higher"):
            errs.append(f"endpoint.direction: {self.endpoint.direction!r}; use 'lower' or 'higher'")
        if d.effect not in ("absolute", "relative"):
            errs.append(f"decision.effect: {d.effect!r}; use 'absolute' or 'relative'")
        if not 0 < d.alpha < 1:
            errs.append(f"decision.alpha: {d.alpha}; use a number in (0, 1), e.g. 0.05")
        if d.correction not in CORRECTIONS:
            errs.append(f"decision.correction: {d.correction!r}; use one of {list(CORRECTIONS)}")
        if d.compare not in ("control", "all-pairs"):
            errs.append(f"decision.compare: {d.compare!r}; use 'control' or 'all-pairs'")
        if d.test not in ("superiority", "non_inferiority", "equivalence"):
            errs.append(f"decision.test: {d.test!r}; use 'superiority', 'non_inferiority' or "
                        "'equivalence'")
        elif d.test != "superiority" and (d.margin is None or not d.margin >= 0):
            errs.append(f"decision.margin: {d.margin!r}; test {d.test!r} needs a margin >= 0")
        if d.min_effect < 0:
            errs.append(f"decision.min_effect: {d.min_effect}; use a number >= 0 (the direction "
                        "comes from endpoint.direction)")
        if d.compare == "control" and self.control is None and self.data_scaling is None \
                and not (self.pairwise and self.pairwise.metric == self.endpoint.metric):
            errs.append("control: compare = 'control' needs a control arm; name one or use "
                        "compare = 'all-pairs'")
        for m, v in self.metric_directions.items():
            if v not in ("lower", "higher"):
                errs.append(f"metric_directions.{m}: {v!r}; use 'lower' or 'higher'")
        for m, v in self.metric_aggregations.items():
            if v not in AGGREGATIONS:
                errs.append(f"metric_aggregations.{m}: {v!r}; use one of {list(AGGREGATIONS)}")
        for m in self.analysed_metrics():
            if self.aggregation(m) == "median":
                errs.append(f"metric {m!r}: aggregation 'median' is not supported by the analysis "
                            "yet (the paired seed x item bootstrap is built on means); use it only "
                            "outside the endpoint, secondary metrics and targets, or declare it "
                            "'mean' or 'geomean' in the recipe")
        if self.cross_eval is not None:
            for a in self.cross_eval.own:
                if a not in self.arms:
                    errs.append(f"analysis.own_eval_set: {a!r} is not an arm; arms: {arms}")
        if self.data_scaling is not None:
            for a, p in self.arms.items():
                v = get_param(p, self.data_scaling.size_param)
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                    errs.append(f"analysis.size_param: arm {a!r} has {self.data_scaling.size_param}"
                                f" = {v!r}; every arm needs a positive number there")
        if self.decision_tree is not None:
            for m, t in self.decision_tree.targets.items():
                if not isinstance(t, (int, float)) or isinstance(t, bool):
                    errs.append(f"analysis.targets.{m}: {t!r}; use a number")
                if m != self.endpoint.metric and m not in self.metric_directions:
                    errs.append(f"analysis.targets.{m}: the metric's direction is unknown")
        if self.pairwise is not None and self.pairwise.reference is not None \
                and self.pairwise.reference not in self.arms:
            errs.append(f"analysis.pairwise_reference: {self.pairwise.reference!r} is not an arm")
        if self.min_items < 1:
            errs.append(f"analysis.min_items: {self.min_items}; use a positive integer")
        if errs:
            raise AnalysisInputError("study design: " + "; ".join(errs))

    @classmethod
    def from_spec(cls, spec: Any) -> "StudyDesign":
        """Build from a validated study (`fairtrial.spec.Spec`: read by its attributes, nothing
        re-validated): trained arms with their resolved params, external arms as fixed systems,
        and the direction and aggregation of every metric from the recipe (and the study
        file's [metrics])."""
        metrics = spec.recipe.metrics
        arms: dict[str, Mapping[str, Any]] = {a.name: a.params for a in spec.arms}
        arms.update({e: {"external": True} for e in spec.external_arms})
        d = spec.decision
        return cls(
            question=spec.question,
            name=spec.name,
            arms=arms,
            control=spec.control,
            replicates=tuple(int(r) for r in spec.replicates),
            fixed_arms=tuple(spec.external_arms),
            endpoint=Endpoint(metric=spec.endpoint.metric, direction=spec.direction,
                              secondary=tuple(spec.endpoint.secondary)),
            decision=Decision(min_effect=d.min_effect, effect=d.effect, alpha=d.alpha,
                              correction=d.correction, compare=d.compare, test=d.test,
                              margin=d.margin),
            metric_directions={m.name: m.direction for m in metrics},
            metric_aggregations={m.name: m.aggregation for m in metrics},
            metric_missing={m.name: m.missing for m in metrics
                            if getattr(m, "missing", None) is not None},
            **_shapes(dict(spec.analysis or {}), arms),
        )


def _shapes(an: Mapping[str, Any], arms: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The study-shape fields of a StudyDesign from the [analysis] table (docs/verdicts.md)."""
    own = an.get("own_eval_set")
    if isinstance(own, str):
        # a template over each arm's params, e.g. "{train_level}": grid arms need no list
        own = {a: _format(own, p) for a, p in arms.items()}
        own = {a: e for a, e in own.items() if e is not None}
    size = an.get("size_param")
    targets = an.get("targets")
    pw = an.get("pairwise_metric")
    return {"min_items": int(an.get("min_items", 30)),
            "cross_eval": CrossEval(own=dict(own)) if own else None,
            "data_scaling": DataScaling(size, an.get("group_param")) if size else None,
            "decision_tree": DecisionTree(targets=dict(targets)) if targets else None,
            "pairwise": Pairwise(pw, an.get("pairwise_reference")) if pw else None}


def _format(template: str, params: Mapping[str, Any]) -> str | None:
    """"{train_level}" or "{model.arch}-{size}" filled from an arm's params; None when a key is
    missing (that arm has no own eval set)."""
    import re

    out = template
    for key in re.findall(r"{([^{}]+)}", template):
        v = get_param(params, key)
        if v is None:
            return None
        out = out.replace("{" + key + "}", str(v))
    return out


def get_param(params: Mapping[str, Any], key: str) -> Any:
    """params["a.b"] reaches params["a"]["b"]; a flat key containing a dot is tried first."""
    if key in params:
        return params[key]
    cur: Any = params
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


@dataclass
class AnalysisContext:
    """Optional inputs of the integrity checks, plus what the report shows as provenance.

    effective_params: one dict per arm/replicate run whose params are known:
        {"arm": str, "replicate": int, "stage": str (optional),
         "declared": {...}, "effective": {...}}   (nested dicts allowed)
    train_texts: arm name (or "*" for every arm) -> the training texts
    eval_texts: eval set name -> {item_id: text}
    splits: one dict per split the recipe made:
        {"name": str, "seed": int | None, "reproducible": bool, "arm": str (optional),
         "details": str (optional)}
    provenance: rendered as given, e.g. {"data": {...digests}, "code_version": "...",
        "hardware": "...", "configs": {...}, "per_arm": {arm: {"wall_s":..., "cpu_h":..., "gpu_h":...}}}
    complete: False while the study is still running; `progress` then holds counts such as
        {"done": 12, "total": 30, "running": 2, "failed": 1}.
    """
    effective_params: Sequence[Mapping[str, Any]] = ()
    train_texts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    eval_texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    splits: Sequence[Mapping[str, Any]] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    complete: bool = True
    progress: Mapping[str, Any] = field(default_factory=dict)


def merge_integrity(per_arm: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """A recipe's integrity hook answers once per arm (`Recipe.integrity`); this is the one merge
    of those answers into the context's inputs: {"train_texts": {arm: [...]}, "eval_texts":
    {eval_set: {item_id: text}} (every arm's items together), "splits": [...] (each split once,
    named by its arm unless it says otherwise)}."""
    out: dict[str, Any] = {"train_texts": {}, "eval_texts": {}, "splits": []}
    for arm, got in per_arm.items():
        got = got or {}
        if got.get("train_texts") is not None:
            out["train_texts"][arm] = list(got["train_texts"])
        for es, items in (got.get("eval_texts") or {}).items():
            out["eval_texts"].setdefault(es, {}).update(items)
        for sp in got.get("splits") or []:
            sp = dict(sp)
            sp.setdefault("arm", arm)
            if sp not in out["splits"]:
                out["splits"].append(sp)
    return out
