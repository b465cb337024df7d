"""The curate recipe's report sections (`Recipe.report_sections`): the funnel (a table and a
plot), the quality scores' distributions, the contamination found and the arms' training sets.
Pure over the stages' files (funnel.json, verdicts.parquet, sets.json): computes only counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

STAGES = ("collect", "quality", "language", "dedup", "select")
SCORES = ("prompt_tokens", "response_tokens", "repetition", "non_letter", "copy", "quality")


def _load(paths: dict[str, Path]) -> dict[str, dict]:
    out = {}
    for s in STAGES:
        f = Path(paths[s]) / "funnel.json" if s in paths else None
        if f is not None and f.exists():
            out[s] = json.loads(f.read_text())
    return out


def funnel_rows(funnels: dict[str, dict]) -> tuple[list[str], list[list[Any]]]:
    """Rows: each stage's removals by rule, then what it kept; columns: the sources and the total."""
    sources = sorted({s for f in funnels.values() for s in f["in"]} |
                     {s for f in funnels.values() for s in f["out"]})
    header = ["stage", "step", *sources, "total"]
    rows = []

    def row(stage, step, by):
        vals = [int(by.get(s, 0)) for s in sources]
        rows.append([stage, step, *vals, sum(vals)])

    for stage in STAGES:
        f = funnels.get(stage)
        if f is None:
            continue
        if stage == "collect":
            row(stage, "read", f["in"])
        for rule, by in f["removed"].items():
            row(stage, f"removed: {rule}", by)
        row(stage, "selected (curated arm)" if stage == "select" else "kept", f["out"])
    return header, rows


def report_sections(paths: dict[str, Path], params: dict[str, Any]) -> list[dict[str, Any]]:
    funnels = _load(paths)
    if not funnels:
        return []
    header, rows = funnel_rows(funnels)
    sources = header[2:-1]
    kept_rows = [r for r in rows if r[1] in ("read", "kept", "selected (curated arm)")]
    sections: list[dict[str, Any]] = [{
        "title": "Curation funnel",
        "text": ("Samples per source through collect -> quality -> language -> dedup -> select: "
                 "each stage's removals by rule (a sample is counted under the first rule it "
                 "fails), then what it kept. Each stage reads only the samples the stage before "
                 "kept: nothing removed comes back."),
        "table": {"header": header, "rows": rows},
        "bars": {"title": "Samples kept after each stage", "ylabel": "samples",
                 "labels": [f"{r[0]}" if r[1] != "read" else "read" for r in kept_rows],
                 "series": {s: [r[2 + k] for r in kept_rows] for k, s in enumerate(sources)},
                 "stacked": True}}]

    col = funnels.get("collect", {})
    if col.get("skipped_first"):
        sections[0]["text"] += (" Malformed rows skipped (first ones): "
                                + "; ".join(col["skipped_first"]) + ".")

    q = Path(paths["quality"]) / "verdicts.parquet" if "quality" in paths else None
    if q is not None and q.exists():
        names = pq.read_schema(q).names
        scores = [s for s in SCORES + ("ifd",) if s in names]
        t = pq.read_table(q, columns=scores)
        qrows = []
        hist = {}
        for s in scores:
            v = np.asarray(t[s].to_pylist(), dtype=float)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            p = np.percentile(v, [0, 10, 50, 90, 100])
            qrows.append([s, *[f"{x:.3g}" for x in p], f"{v.mean():.3g}"])
            if s in ("repetition", "non_letter", "copy", "quality"):
                counts, _ = np.histogram(v, bins=10, range=(0.0, 1.0))
                hist[s] = [int(c) for c in counts]
        flagged = funnels.get("quality", {}).get("flagged", {})
        sections.append({
            "title": "Quality scores",
            "text": ("Distribution of each deterministic score over every collected sample "
                     "(docs/recipes/curate.md defines them), and how many samples each rule "
                     "flags (a sample may fail several; the funnel counts its first): "
                     + ", ".join(f"{r} {n}" for r, n in flagged.items()) + "."),
            "table": {"header": ["score", "min", "p10", "median", "p90", "max", "mean"], "rows": qrows},
            "bars": {"title": "Share scores: samples per bin of width 0.1", "ylabel": "samples",
                     "labels": [f"{k / 10:.1f}" for k in range(10)], "series": hist, "stacked": False}})

    lang = funnels.get("language")
    if lang is not None:
        ab = lang.get("abstained", {})
        sections.append({
            "title": "Language",
            "text": (f"Kept language: {lang.get('language')}. Abstained (lingua gave no language, "
                     f"or the text was too short): {sum(ab.values())} of the samples that passed "
                     f"quality ({', '.join(f'{s} {n}' for s, n in ab.items()) or 'none'}). Most "
                     "frequent detected languages: "
                     + ", ".join(f"{k} {v}" for k, v in lang.get("detected", {}).items()) + "."),
        })

    dd = funnels.get("dedup")
    if dd is not None:
        ex = dd.get("contamination_examples", [])
        sections.append({
            "title": "Contamination and duplicates",
            "text": (f"{dd.get('contaminated', 0)} training samples duplicate an evaluation item "
                     f"(exactly or at Jaccard >= {dd['params']['threshold']}) and were removed from "
                     f"every arm. Near-duplicates: {dd.get('clusters', 0)} clusters (largest "
                     f"{dd.get('largest_cluster', 0)}), from {dd.get('candidate_pairs', 0)} LSH "
                     f"candidate pairs of which {dd.get('verified_pairs', 0)} passed the real "
                     f"Jaccard check ({dd['params']['backend']}, {dd['params']['num_perm']} "
                     f"permutations, {dd['params']['bands']} bands, word {dd['params']['ngram']}-grams "
                     f"of the {dd['params']['field']})."),
            "table": {"header": ["training sample", "evaluation item", "Jaccard"],
                      "rows": [[e["id"], e["eval_item"], f"{e['similarity']:.3f}"] for e in ex]}
            if ex else None})

    sel = funnels.get("select")
    if sel is not None:
        sets = sel.get("sets", {})
        srcs = sorted({s for v in sets.values() for s in v["sources"]})
        sections.append({
            "title": "Training sets of the arms",
            "text": ("Every arm has the same number of samples and the same token budget (tokens "
                     "= words and punctuation marks of prompt + response), so that arms differ "
                     "only in curation; swaps: how many long samples were exchanged for the next "
                     "shorter ones of the arm's order to meet the budget."),
            "table": {"header": ["arm", "samples", "tokens", "swaps", "pool", "mean quality", *srcs],
                      "rows": [[a, v["size"], v["tokens"], v["swaps"], v["pool"], v["mean_quality"],
                                *[v["sources"].get(s, 0) for s in srcs]] for a, v in sets.items()]}})
    return sections
