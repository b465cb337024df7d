"""Name -> recipe. Built-in recipes by module path; third-party ones through the entry-point group
`fairtrial.recipes` (value: a module exposing `RECIPE`).

A recipe's own CLI commands: a `commands.py` module in the recipe package exposing `app` (a typer
app), or `Recipe.commands` (a typer app, or a callable returning one). `command_apps()` collects
them for the core CLI, which mounts their commands next to its own."""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any
from importlib.metadata import entry_points

from fairtrial.base.names import unknown_name
from fairtrial.errors import UserError
from fairtrial.recipes.api import Recipe

BUILTIN = {
    "ilm": "fairtrial.recipes.ilm",
    "curate": "fairtrial.recipes.curate",
    "lvm": "fairtrial.recipes.lvm",
    "scores": "fairtrial.recipes.evaluation_only",  # the recipe of evaluation-only studies
    "toolcall": "fairtrial.recipes.toolcall",
    "_test": "fairtrial.recipes.enginetest",
}


@lru_cache(maxsize=1)
def _modules() -> dict[str, str]:
    # entry_points() scans every installed distribution (tens of ms): once per process
    mods = dict(BUILTIN)
    for ep in entry_points(group="fairtrial.recipes"):
        mods.setdefault(ep.name, ep.value)
    return mods


def names(include_internal: bool = False) -> list[str]:
    out = []
    for n in _modules():
        if n.startswith("_") and not include_internal:
            continue
        out.append(n)
    return sorted(out)


def get(name: str) -> Recipe:
    mods = _modules()
    if name not in mods:
        raise UserError(unknown_name("recipe", name, names(), candidates=mods))
    try:
        module = importlib.import_module(mods[name])
    except ModuleNotFoundError as e:
        raise UserError(f'recipe "{name}" is not available: {e}') from e
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise UserError(f'recipe module {mods[name]} does not define RECIPE')
    return recipe


def command_apps() -> list[Any]:
    """The typer apps of every recipe that declares commands (see the module's docstring), in
    name order. A recipe that cannot be loaded contributes none (`fairtrial recipes` says why)."""
    apps = []
    for name in sorted(_modules()):
        module = _modules()[name]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        folders = list(getattr(found, "submodule_search_locations", None) or [])
        try:
            if any((Path(f) / "commands.py").is_file() for f in folders):
                sub = getattr(importlib.import_module(module + ".commands"), "app", None)
            else:
                sub = get(name).commands
            if callable(sub) and not hasattr(sub, "registered_commands"):
                sub = sub()
        except (UserError, ImportError):
            continue
        if sub is not None and hasattr(sub, "registered_commands"):
            apps.append(sub)
    return apps
