"""`fairtrial check`: the study's plan, or what an evaluation-only study compares."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from fairtrial.app import check as app_check
from fairtrial.cli.terminal import WorkspaceOpt, console, emit_json, fmt_s, q


def check(study: Path = typer.Argument(..., help="The study file (TOML)."),
          workspace: Path | None = WorkspaceOpt,
          as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")) -> None:
    """Validate a study file and print its plan: arms x replicates x stages, shared and cached
    stage runs, and estimated time per stage when history exists."""
    checked = app_check.check(study, workspace)
    spec, rows = checked.spec, checked.stages
    if as_json:
        emit_json(checked.to_dict())
        return
    if spec.evaluation_only:
        _check_evaluation_only(spec, study)
        return
    console.print(f"[bold]{escape(spec.name)}[/]: {escape(spec.question)}", highlight=False)
    shape = (f"{len(spec.arms)} arms x {len(spec.replicates)} replicates (seeds "
             f"{spec.replicates})" if spec.arms else
             f"{len(spec.external_arms)} external arms, nothing trained")
    console.print(f"recipe {spec.recipe.name}; {shape}; control: {spec.control or '-'}; "
                  f"endpoint: {spec.endpoint.metric} ({spec.direction} is better)",
                  markup=False, highlight=False)
    if spec.arms:
        console.print("arms: " + ", ".join(a.name for a in spec.arms), markup=False,
                      highlight=False)
    if spec.planned_external_arms:
        raw = spec.recipe.score_outputs is not None
        console.print(f"external arms: {', '.join(spec.planned_external_arms)} (their "
                      + ("outputs" if raw else "scores") + " come from fairtrial import"
                      + (" --outputs" if raw else "") + f"; the plan runs "
                      f"{', '.join(spec.recipe.external_stages)} for them: the same items and "
                      "trivial baselines as a trained arm)", markup=False, highlight=False)
    t = Table("stage", "cells", "stage runs", "shared", "cached", "to run", "est. each")
    for r in rows:
        t.add_row(escape(r["stage"]), str(r["cells"]), str(r["runs"]), str(r["shared"]), str(r["cached"]),
                  str(r["to_run"]), fmt_s(r["est_s_each"]) if r["est_s_each"] else "-")
    console.print(t)
    console.print("[green]valid[/]")


def _check_evaluation_only(spec, study: Path) -> None:
    """An evaluation-only study has no plan: say what it compares and how its scores come in."""
    console.print(f"[bold]{escape(spec.name)}[/]: {escape(spec.question)}", highlight=False)
    ep = spec.recipe.metric(spec.endpoint.metric)
    console.print(f"evaluation only (recipe {spec.recipe.name}): {len(spec.external_arms)} external "
                  f"arms, nothing to train; control: {spec.control or '-'}; endpoint: "
                  f"{ep.name} ({ep.direction} is better, {ep.aggregation})",
                  highlight=False, markup=False)
    if len(spec.replicates) > 1:
        console.print(f"replicates {spec.replicates}: an external arm is one fixed system; its "
                      "scores are imported once and count as one replicate", markup=False)
    raw = spec.recipe.score_outputs is not None  # the recipe scores raw outputs itself
    console.print("import each system's " + ("raw outputs (scored by the recipe)" if raw else
                                             "per-item scores") + ", then report:", markup=False)
    for a in spec.external_arms:
        console.print(f"  fairtrial import {q(str(study))} {q(a + '.jsonl')} --arm {q(a)}"
                      + (" --outputs" if raw else ""), highlight=False, markup=False)
    console.print(f"  fairtrial report {q(str(study))}", highlight=False, markup=False)
    console.print("[green]valid[/]")
