"""The recipes a person can use (`fairtrial recipes`) and the commands they bring
(`recipes/<name>/commands.py`), which the CLI mounts next to its own."""

from __future__ import annotations

from typing import Any

from fairtrial.errors import UserError


def recipes() -> list[dict[str, Any]]:
    """Every public recipe: {"name", "available": True, "description", "stages": [{"name",
    "version", "needs"}], "metrics": [{"name", "direction", "aggregation"}]}, or {"name",
    "available": False, "error"} for one that cannot be loaded."""
    from fairtrial.recipes import registry

    rows = []
    for name in registry.names():
        try:
            r = registry.get(name)
        except UserError as e:
            rows.append({"name": name, "available": False, "error": str(e)})
            continue
        rows.append({"name": name, "available": True, "description": r.description,
                     "stages": [{"name": s.name, "version": s.version,
                                 "needs": list(s.needs)} for s in r.stages],
                     "metrics": [{"name": m.name, "direction": m.direction,
                                  "aggregation": m.aggregation} for m in r.metrics]})
    return rows


def command_apps() -> list[Any]:
    """The recipes' own command apps (typer apps, for the CLI to mount; see
    `fairtrial.recipes.registry.command_apps`)."""
    from fairtrial.recipes import registry

    return registry.command_apps()
