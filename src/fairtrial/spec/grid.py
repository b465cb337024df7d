"""Arms as the study file declares them: their names (checked, or made from the grid's name
template), the [grid] expanded into one arm per combination, an arm's params over the study's."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from fairtrial.spec.schema import MAX_ARM_NAME, unprintable


def arm_name_problem(name: str) -> str | None:
    """Why `name` cannot be an arm's name, else None. Arm names are printed on one line (the
    report's first line), typed as `logs ARM/SEED/STAGE` and used in file names."""
    if not name.strip():
        return "an arm name must not be empty or blank"
    if len(name) > MAX_ARM_NAME:
        return f"arm name is {len(name):,} characters long; at most {MAX_ARM_NAME}"
    bad = unprintable(name)
    if bad:
        return f"arm name {name!r} holds the control character {bad}; use printable characters"
    for part in ("/", "\\", ".."):
        if part in name:
            return (f"arm name {name!r} holds {part!r}, which reads as a path (`fairtrial logs "
                    "ARM/SEED/STAGE`, file names); use letters, digits, spaces, - _ . = , and the like")
    return None


def deep_merge(base: dict, over: dict) -> dict:
    """`base` with `over` laid over it, nested tables merged key by key (copies, not views)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def arm_name_from_template(template: str | None, combo: dict[str, Any]) -> str:
    if template:
        try:
            return template.format(**combo)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"name template {template!r} cannot be filled: {e}") from e
    return ",".join(f"{k}={v}" for k, v in combo.items())


def expand_grid(grid: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    grid = dict(grid)
    template = grid.pop("name", None)
    if template is not None and not isinstance(template, str):
        raise ValueError(f'grid.name must be a name template such as "{{size}}-{{level}}", '
                         f"got {template!r}")
    if not grid:
        raise ValueError("empty grid: give at least one param with a list of values")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"grid.{k} must be a non-empty list of values, got {v!r}")
    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    return template, combos


def dotted_to_nested(d: dict[str, Any]) -> dict[str, Any]:
    """grid keys may be dotted ("model.n_layer"): turn them into nested dicts."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        parts = k.split(".")
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return out
