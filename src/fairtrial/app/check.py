"""Check a study file (`fairtrial check`): validate it and plan it, with what is cached already
and how long each stage took before."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.app.resolve import load, open_store, open_workspace, plan

if TYPE_CHECKING:
    from fairtrial.spec import Spec


@dataclass
class Checked:
    spec: Spec
    stages: list[dict[str, Any]]
    """Per stage: stage, cells, runs, shared, cached, to_run, est_s_each, seeded."""

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {"study": spec.name, "recipe": spec.recipe.name, "question": spec.question,
                "arms": [a.name for a in spec.arms], "replicates": spec.replicates,
                "control": spec.control, "endpoint": spec.endpoint.metric,
                "direction": spec.direction, "stages": self.stages, "valid": True,
                "external_arms": list(spec.external_arms),
                "external_stages": list(spec.recipe.external_stages)
                if spec.planned_external_arms else [],
                "evaluation_only": spec.evaluation_only,
                "metrics": [{"name": m.name, "direction": m.direction,
                             "aggregation": m.aggregation, "missing": m.missing}
                            for m in spec.recipe.metrics]}


def check(study: str | Path, workspace: str | Path | None) -> Checked:
    """Validate a study file and plan it: per stage, cells, distinct and shared stage runs, how
    many are cached in this workspace, and the median duration of finished runs."""
    from fairtrial.store import artifacts

    spec = load(study)
    ws = open_workspace(workspace)
    p = plan(spec, ws)
    store = open_store(ws)
    history = store.durations(spec.recipe.name)
    rows = []
    for st in p.stages:
        nodes = [n for n in p.nodes.values() if n.stage == st]
        if not nodes:   # a stage no arm runs (a study of external arms runs only theirs)
            continue
        cached = sum(1 for n in nodes if artifacts.verify(ws, n.key).ok)
        shared = sum(1 for n in nodes if len(n.cells) > 1)
        hist = history.get(st)
        est = sorted(hist)[len(hist) // 2] if hist else None
        rows.append({"stage": st, "cells": sum(1 for (_, _, s), _ in p.cells.items() if s == st),
                     "runs": len(nodes), "shared": shared, "cached": cached,
                     "to_run": len(nodes) - cached, "est_s_each": est,
                     "seeded": spec.recipe.stage(st).seeded})
    return Checked(spec=spec, stages=rows)
