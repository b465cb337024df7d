"""Analyse a study and write its report (`fairtrial report`): the item scores of every done stage
run gathered, analysed (integrity, paired comparisons, decision rule) and rendered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.app.resolve import open_store
from fairtrial.errors import UserError

if TYPE_CHECKING:
    from fairtrial.spec import Spec
    from fairtrial.workspace import Workspace


@dataclass
class Reported:
    result: Any
    """The fairtrial.analysis.AnalysisResult (`headline`, `to_dict()`)."""
    folder: Path
    """Where report.md, report.html and report.json were written."""


def report(spec: Spec, ws: Workspace, out: Path | None = None, seed: int = 20240601,
           resamples: int = 10_000) -> Reported:
    """Analyse the study's item scores and write report.md, report.html and report.json."""
    from fairtrial.report import render_html, render_markdown

    result = analyse(spec, ws, seed=seed, resamples=resamples)
    folder = out or ws.study_dir(spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(render_markdown(result))
    (folder / "report.html").write_text(render_html(result))
    (folder / "report.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return Reported(result=result, folder=folder)


def analyse(spec: Spec, ws: Workspace, seed: int = 20240601, resamples: int = 10_000,
            store=None):
    """The study's AnalysisResult (what `report` writes), computed afresh; writes nothing."""
    from fairtrial.analysis import AnalysisContext, StudyDesign, analyze
    from fairtrial.collect import gather

    store = store or open_store(ws)
    got = gather(ws, store, spec)
    design = StudyDesign.from_spec(spec)
    ctx = AnalysisContext(effective_params=got["effective_params"], provenance=got["provenance"],
                          complete=got["complete"], progress=got["progress"],
                          train_texts=got["train_texts"], eval_texts=got["eval_texts"],
                          splits=got["splits"])
    if got["scores"].empty:
        if got.get("sections"):  # the recipe reports what its stages found (curate's funnel)
            from fairtrial.analysis import without_scores

            result = without_scores(design, ctx)
            result.sections = got["sections"]
            return result
        raise UserError(f"{spec.name}: no item scores yet ({got['progress'].get('done', 0)} of "
                        f"{got['progress']['total']} stage runs done); run the study first")
    result = analyze(got["scores"], design, ctx, seed=seed, n_resamples=resamples)
    result.sections = got.get("sections") or []
    return result
