"""`validate`: a parsed study file to a `Spec`, or one SpecError holding all of its errors.

Each check below takes what it reads and `err(loc, message)`, which appends to the one error list
of the file: the errors come in the order the checks run, and the file's line of `loc` is looked
up once, in `err`. The arms' checks are in `fairtrial.spec.arms`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fairtrial.errors import UserError
from fairtrial.recipes import registry
from fairtrial.recipes.api import Recipe, Resources
from fairtrial.spec.arms import (check_external_arm_names, declared_arms, external_params,
                                 replicates_of, trained_arms)
from fairtrial.spec.errors import SpecError, pydantic_errors
from fairtrial.spec.metrics import ANALYSED_AGGREGATIONS, toml_key, with_declared_metrics
from fairtrial.spec.schema import (EVALUATION_ONLY, MAX_STUDY_NAME, AnalysisSpec, StudyFile,
                                   unprintable)
from fairtrial.spec.study import Spec
from fairtrial.tomlpos import format_loc, line_of


def validate(raw: dict[str, Any], path: Path, text: str = "") -> Spec:
    errors: list[tuple[int | None, str, str]] = []

    def err(loc: tuple, msg: str) -> None:
        errors.append((line_of(text, loc) if text else None, format_loc(loc), msg))

    try:
        sf = StudyFile.model_validate(raw)
    except ValidationError as e:
        for loc, msg in pydantic_errors(e, StudyFile):
            err(loc, msg)
        raise SpecError(path, errors) from None

    try:
        recipe = registry.get(sf.recipe or EVALUATION_ONLY)
    except UserError as e:
        err(("recipe",), str(e))
        raise SpecError(path, errors) from None
    recipe = with_declared_metrics(recipe, sf.metrics, err)
    evaluation_only = recipe.name == EVALUATION_ONLY

    _check_endpoint(sf, recipe, evaluation_only, err)
    resources = _resources(sf, recipe, err)

    declared = declared_arms(sf, raw, evaluation_only, err)
    if not declared and not sf.external_arms and not errors:
        err(("arms",), "no arms: declare external_arms, [[arms]] or a [grid]"
            if not evaluation_only else
            'no arms: list the systems to compare, e.g. external_arms = ["system-a", "system-b"]')
    replicates = replicates_of(sf, declared, err)
    arms, seen = trained_arms(declared, sf, recipe, path, err)
    check_external_arm_names(sf.external_arms, seen, err)
    ext_params = external_params(sf, recipe, declared, evaluation_only, path, err)

    _check_control(sf, seen, err)
    _check_decision(sf, raw, err)
    _check_analysis(sf.analysis, [m.name for m in recipe.metrics], seen, err)
    _check_name(sf, path, err)

    if errors:
        raise SpecError(path, errors)

    canonical = json.dumps(raw, sort_keys=True, default=str)
    return Spec(
        path=path.resolve(), name=sf.name or path.stem, question=sf.question, recipe=recipe,
        replicates=replicates, control=sf.control,
        external_arms=list(sf.external_arms), endpoint=sf.endpoint,
        decision=sf.decision, params=sf.params, arms=arms, resources=resources,
        analysis=sf.analysis.model_dump(exclude_none=True),
        digest=hashlib.sha256(canonical.encode()).hexdigest(), raw=raw,
        external_params=ext_params,
    )


def _check_endpoint(sf: StudyFile, recipe: Recipe, evaluation_only: bool, err) -> None:
    """[endpoint]: its metrics are the recipe's (or the study's own), aggregated as the analysis
    can compute, and its direction is the metric's."""
    metric_names = [m.name for m in recipe.metrics]
    for i, m in enumerate([sf.endpoint.metric] + sf.endpoint.secondary):
        loc = ("endpoint", "metric") if i == 0 else ("endpoint", "secondary", i - 1)
        if m not in metric_names:
            if evaluation_only:
                err(loc, f'unknown metric "{m}": a study without a recipe declares its metrics, '
                         f'e.g. [metrics.{toml_key(m)}] direction = "higher", aggregation = '
                         '"proportion" (or "mean", "geomean")'
                         + (f'; declared: {", ".join(metric_names)}' if metric_names else ""))
            else:
                err(loc, f'unknown metric "{m}" for recipe {recipe.name}; known: '
                         f'{", ".join(metric_names)} (or declare it under [metrics])')
    # a metric the analysis cannot aggregate would fail at `report`, after all the compute
    analysed = [(("endpoint", "metric"), sf.endpoint.metric)]
    analysed += [(("endpoint", "secondary", i), m) for i, m in enumerate(sf.endpoint.secondary)]
    analysed += [(("analysis", "targets", m), m) for m in (sf.analysis.targets or {})]
    usable = [n for n in metric_names if recipe.metric(n).aggregation in ANALYSED_AGGREGATIONS]
    for loc, m in analysed:
        agg = recipe.metric(m).aggregation if m in metric_names else None
        if agg is not None and agg not in ANALYSED_AGGREGATIONS:
            err(loc, f'metric "{m}" is aggregated as "{agg}", which the analysis cannot compute '
                     "yet (its paired bootstrap is built on means); use a metric aggregated as "
                     + ", ".join(ANALYSED_AGGREGATIONS)
                     + (f' (recipe {recipe.name}: {", ".join(usable)})' if usable else ""))
    if sf.endpoint.metric in metric_names and sf.endpoint.direction:
        declared = recipe.metric(sf.endpoint.metric).direction
        if declared != sf.endpoint.direction:
            err(("endpoint", "direction"),
                f'{sf.endpoint.metric} is "{declared}" is better, not "{sf.endpoint.direction}"')


def _resources(sf: StudyFile, recipe: Recipe, err) -> dict[str, Resources]:
    """[resources]: per stage of the recipe; an unknown stage is an error."""
    stage_names = [s.name for s in recipe.stages]
    resources: dict[str, Resources] = {}
    for st, r in sf.resources.items():
        if st not in stage_names:
            err(("resources", st), f'unknown stage "{st}"; known: {", ".join(stage_names)}')
        else:
            resources[st] = Resources(cpus=r.cpus, gpus=r.gpus, memory_gb=r.memory_gb)
    return resources


def _check_control(sf: StudyFile, seen: dict[str, str], err) -> None:
    """control names an arm (trained or external); compare = "control" has one to compare with."""
    if sf.control is not None and sf.control not in seen:
        err(("control",), f'control "{sf.control}" is not an arm; arms: {", ".join(seen) or "none"}')
    if sf.decision.compare == "control" and sf.control is None and len(seen) > 1 \
            and sf.decision.test != "non_inferiority" \
            and sf.analysis.size_param is None:  # a data-scaling study compares sizes, not a control
        err(("decision", "compare"),
            'compare = "control" needs a control arm; set control = "<arm>" or compare = "all-pairs"')


def _check_decision(sf: StudyFile, raw: dict[str, Any], err) -> None:
    """[decision]: the keys each test needs and refuses (one line each)."""
    d = sf.decision
    given = raw.get("decision") or {}
    if d.test == "superiority":
        if d.margin is not None:
            err(("decision", "margin"),
                'margin is for test = "non_inferiority" or "equivalence"; a superiority test '
                "uses min_effect (remove margin, or set the test)")
        return
    if d.margin is None:
        err(("decision", "test"), f'test = "{d.test}" needs a margin (>= 0, on the scale of '
                                  f'effect = "{d.effect}"), e.g. margin = 0.05')
    if "min_effect" in given and d.min_effect > 0:
        err(("decision", "min_effect"), f'min_effect is for superiority; test = "{d.test}" uses '
                                        "margin instead (remove min_effect)")
    if d.test == "equivalence" and d.alpha >= 0.5:
        err(("decision", "alpha"), f"alpha {d.alpha:g}: an equivalence test reads the 1 - 2 alpha "
                                   "interval (TOST), so alpha must be below 0.5")
    if d.test == "non_inferiority":
        if sf.control is None:
            err(("decision", "test"), 'test = "non_inferiority" asks whether each arm is not worse '
                                      'than a reference: name it with control = "<arm>"')
        elif d.compare != "control":
            err(("decision", "compare"), 'test = "non_inferiority" compares each arm with the '
                                         'control: use compare = "control"')


def _check_analysis(an: AnalysisSpec, metric_names: list[str], seen: dict[str, str], err) -> None:
    """[analysis]: the arms and metrics it names exist."""
    if isinstance(an.own_eval_set, dict):
        for a in an.own_eval_set:
            if a not in seen:
                err(("analysis", "own_eval_set", a), f'"{a}" is not an arm; arms: {", ".join(seen)}')
    for m in list(an.targets or {}) + ([an.pairwise_metric] if an.pairwise_metric else []):
        if m not in metric_names:
            err(("analysis",), f'unknown metric "{m}"; known: {", ".join(metric_names)}')
    if an.pairwise_reference and an.pairwise_reference not in seen:
        err(("analysis", "pairwise_reference"), f'"{an.pairwise_reference}" is not an arm')


def _check_name(sf: StudyFile, path: Path, err) -> None:
    """Without `name`, the file's name names the study: it must make a usable folder name too."""
    if sf.name is None:
        if len(path.stem) > MAX_STUDY_NAME:
            err(("name",), f"the study is named after its file, {len(path.stem)} characters long; "
                           f"at most {MAX_STUDY_NAME}: set name = \"...\" in the file")
        elif unprintable(path.stem) or path.stem.startswith("."):
            err(("name",), f"the study is named after its file, {path.stem!r}, which is no usable "
                           "study name: set name = \"...\" in the file")
