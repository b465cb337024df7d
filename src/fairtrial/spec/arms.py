"""The arms' checks of `validate`: the trained arms ([[arms]], then the [grid]), their seeds and
params, and the external arms. Each takes `err(loc, message)`, which appends to the file's one
error list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fairtrial.recipes.api import Recipe
from fairtrial.spec.errors import pydantic_errors
from fairtrial.spec.grid import (arm_name_from_template, arm_name_problem, deep_merge,
                                 dotted_to_nested, expand_grid)
from fairtrial.spec.schema import StudyFile
from fairtrial.spec.study import Arm

Declared = list[tuple[str, dict, str, tuple]]
"""The trained arms as declared: name, overrides, origin ("arms[2]" or "grid"), loc prefix."""


def declared_arms(sf: StudyFile, raw: dict[str, Any], evaluation_only: bool, err) -> Declared:
    """The trained arms: explicit, then the grid (none in an evaluation-only study)."""
    declared: Declared = []
    for i, a in enumerate(sf.arms):
        a = dict(a)
        name = a.pop("name", None)
        if not isinstance(name, str) or not name:
            err(("arms", i), "each arm needs a name (a non-empty string)")
            continue
        declared.append((name, a, f"arms[{i}]", ("arms", i)))
    if sf.grid is not None:
        try:
            template, combos = expand_grid(sf.grid)
            for combo in combos:
                name = arm_name_from_template(template, combo)
                declared.append((name, dotted_to_nested(combo), "grid", ("grid",)))
        except ValueError as e:
            err(("grid",), str(e))
    if evaluation_only:
        # nothing to train: every arm is external, and there are no params or stages to set
        for key in ("arms", "grid", "params", "resources"):
            if raw.get(key):
                err((key,), f"an evaluation-only study (no recipe) trains nothing, so it has no "
                            f"{key}; declare its systems in external_arms, or name a recipe")
        declared = []
    return declared


def replicates_of(sf: StudyFile, declared: Declared, err) -> list[int]:
    """The seeds: required when the study trains arms."""
    replicates = list(sf.replicates) if sf.replicates is not None else None
    if replicates is None:
        if declared:
            err(("replicates",), "required key is missing: the seeds every trained arm runs, "
                                 "e.g. replicates = [0, 1, 2]")
        replicates = [0]   # external systems: one fixed run each (see docs/study-file.md)
    return replicates


def trained_arms(declared: Declared, sf: StudyFile, recipe: Recipe, path: Path,
                 err) -> tuple[list[Arm], dict[str, str]]:
    """The trained arms whose names and params are valid, and every usable name seen (name ->
    where it was declared)."""
    seen: dict[str, str] = {}
    arms: list[Arm] = []
    for name, overrides, origin, loc in declared:
        problem = arm_name_problem(name)
        if problem:
            err(loc + (("name",) if origin != "grid" else ()), problem)
            continue
        if name in seen:
            err(loc + (("name",) if origin != "grid" else ()),
                f'duplicate arm name "{name}" (also {seen[name]})')
            continue
        seen[name] = origin
        merged = deep_merge(sf.params, overrides)
        try:
            model = recipe.params.model_validate(merged, context={"base_dir": path.parent.resolve()})
        except ValidationError as e:
            for ploc, msg in pydantic_errors(e, recipe.params):
                top = ploc[0] if ploc else None
                if top is not None and top in overrides:
                    where = loc + tuple(ploc) if origin != "grid" else ("grid",) + tuple(ploc)
                else:
                    where = ("params",) + tuple(ploc)
                prefix = f"arm {name}: " if origin == "grid" else ""
                err(where, prefix + msg)
            continue
        arms.append(Arm(name=name, params=model.model_dump(mode="json"), overrides=overrides,
                        origin=origin))
    return arms, seen


def check_external_arm_names(external_arms: list[str], seen: dict[str, str], err) -> None:
    """external_arms: usable names, none a trained arm's; adds each usable one to `seen`."""
    for i, ext in enumerate(external_arms):
        problem = arm_name_problem(ext)
        if problem:
            err(("external_arms", i), problem)
        elif ext in seen:
            err(("external_arms", i), f'"{ext}" is also a trained arm; use another name')
        else:
            seen[ext] = f"external_arms[{i}]"


def external_params(sf: StudyFile, recipe: Recipe, declared: Declared, evaluation_only: bool,
                    path: Path, err) -> dict[str, Any] | None:
    """The resolved params the external arms' planned stages run with, else None.

    External arms of a recipe that plans stages for them (toolcall: prepare and the trivial
    baselines) run those with the study's own [params]: validated here, as an arm's."""
    if not (sf.external_arms and recipe.external_stages and not evaluation_only):
        return None
    try:
        model = recipe.params.model_validate(sf.params,
                                             context={"base_dir": path.parent.resolve()})
        return model.model_dump(mode="json")
    except ValidationError as e:
        # the same text as a trained arm's error on a shared param, so it is said once;
        # a param every arm sets for itself needs saying why the study's own is read
        overridden = {k for _, o, _, _ in declared for k in o}
        for ploc, msg in pydantic_errors(e, recipe.params):
            if ploc and ploc[0] in overridden:
                msg += (f" (the external arms run {', '.join(recipe.external_stages)} with "
                        "the study's own [params], without arm overrides)")
            err(("params",) + tuple(ploc), msg)
        return None
