"""`fairtrial report` and `fairtrial import`: the study's verdict, and item scores from elsewhere."""

from __future__ import annotations

from pathlib import Path

import typer

from fairtrial.app import imports as app_imports
from fairtrial.app import report as app_report
from fairtrial.app import resolve
from fairtrial.cli.terminal import WorkspaceOpt, console, emit_json


def report(study: Path = typer.Argument(..., help="The study file (TOML)."),
           workspace: Path | None = WorkspaceOpt,
           out: Path | None = typer.Option(None, help="Folder for report.md and report.html "
                                                        "(default: the study's folder in the workspace)."),
           seed: int = typer.Option(20240601, min=0, max=2**63 - 1,
                                    help="Seed of the bootstrap (reports are reproducible)."),
           resamples: int = typer.Option(10_000, min=1, help="Bootstrap resamples."),
           as_json: bool = typer.Option(False, "--json", help="Print the analysis as JSON.")) -> None:
    """Analyse a study's item scores and write report.md and a self-contained report.html.
    The first line is the verdict with its effect and interval; integrity findings come next."""
    spec = resolve.load(study)
    ws = resolve.open_workspace(workspace)
    done = app_report.report(spec, ws, out, seed=seed, resamples=resamples)
    result, folder = done.result, done.folder
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(result.headline, highlight=False, markup=False)
    console.print(f"report: {folder / 'report.md'}  and  {folder / 'report.html'}", markup=False,
                  highlight=False)


def import_(study: Path = typer.Argument(..., help="The study file (TOML)."),
            arm: str = typer.Option(..., "--arm", help="An external arm named in the study's "
                                                       "external_arms."),
            scores: Path = typer.Argument(..., help="JSONL: item_id, value, metric, eval_set."),
            metric: str | None = typer.Option(None, help="Metric of every line without one."),
            eval_set: str | None = typer.Option(None, help="Eval set of every line without one."),
            outputs: bool = typer.Option(False, "--outputs",
                                         help="The file holds raw outputs (item_id or the exact "
                                              "prompt, and output), scored by the recipe's own "
                                              "scorer."),
            workspace: Path | None = WorkspaceOpt,
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Add item scores produced elsewhere (e.g. a hosted API model) as an external arm."""
    spec = resolve.load(study)
    ws = resolve.open_workspace(workspace)
    out = app_imports.import_scores(spec, ws, arm, scores, metric, eval_set, outputs=outputs)
    if as_json:
        emit_json(out)
        return
    console.print(f"imported {out['rows']} item scores as arm {arm} ({', '.join(out['eval_sets'])}); "
                  f"stage run {out['key'][:12]}", highlight=False, markup=False)
    if out.get("outputs", {}).get("missing"):
        o = out["outputs"]
        console.print(f"  note: {o['missing']:,} of the {o['items']:,} evaluation items have no "
                      f"output (e.g. {', '.join(o['missing_ids'][:3])}): missing, compared on "
                      "shared items and shown counted as failures", highlight=False, markup=False)
    for es, cov in out["coverage"].items():
        if cov["same"] is False:   # None: no other arm has scores on this eval set yet
            parts = []
            if cov["missing"]:
                parts.append(f"lacks {cov['missing']:,} of the {cov['others']:,} items the other "
                             f"arms have (e.g. {', '.join(cov['missing_ids'][:3])})")
            if cov["extra"]:
                parts.append(f"has {cov['extra']:,} items no other arm has")
            console.print(f"  note: eval set {es}: {arm} " + " and ".join(parts)
                          + "; the report compares each pair of arms on the items both have and "
                          "names the missing ones", highlight=False, markup=False)
    if out["replicates"] > 1:
        console.print(f"  note: {arm} is one fixed system: its scores stand for every seed of the "
                      "study and count as one replicate", highlight=False, markup=False)
