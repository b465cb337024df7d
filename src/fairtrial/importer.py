"""`fairtrial import`: item scores produced elsewhere (a hosted API model's scored outputs, say)
become an external arm of a study, so they can be compared with, or be, the control.

The file is JSONL, one object per item and metric:
  {"item_id": "...", "value": 0.83, "metric": "args_f1", "eval_set": "test"}
`metric` and `eval_set` may be given once on the command line instead; `eval_set_digest`,
`item_digest` (a digest of the item's content, e.g. sha256 of the question) and `system` are
optional. Values: JSON numbers, or JSON booleans (true = 1, false = 0); a string is refused even
when it spells a number, and so are NaN and infinities. A metric declared as a "proportion" takes
0/1 values only.

An external arm is one fixed system: its scores are stored once and stand for every seed of the
study, so it stays paired with trained arms seed by seed; the analysis counts it as one replicate
(never as several), and between two external arms the comparison has one replicate.

Items are identified by (eval set, item id). Without an `eval_set_digest` in the file the rows get
the digest "undeclared": an import only claims which items it scored, so an arm lacking some items
is a coverage finding (missing items, compared pair by pair on the shared ones), never an eval-set
mismatch. A declared digest that differs from another arm's, or an `item_digest` that differs for
the same item id, is a mismatch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from fairtrial.base.digests import digest_of, sha256_file
from fairtrial.errors import UserError
from fairtrial.scores import FILENAME, UNDECLARED, read_item_scores, write_item_scores
from fairtrial.spec import Spec
from fairtrial.store import artifacts
from fairtrial.store.db import IMPORT_STAGE, Store
from fairtrial.workspace import Workspace


def _value(path: Path, n: int, obj: dict) -> float:
    """A row's value: a finite JSON number, or a boolean as 0/1; anything else names the row."""
    key = "value" if "value" in obj else "score" if "score" in obj else None
    if key is None:
        raise UserError(f"{path}:{n}: value is missing; give \"value\": a number (or true/false)")
    v = obj[key]
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            number = math.isfinite(float(v))
        except ValueError:
            number = False
        if number:
            raise UserError(f"{path}:{n}: {key} is a number written as a string ({v!r}); write "
                            "it as a JSON number (0.83, not \"0.83\") or a boolean")
        raise UserError(f"{path}:{n}: {key} must be a finite number, got the string {v!r}")
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UserError(f"{path}:{n}: {key} must be a finite number, got {v!r}")
    return float(v)


def _read_jsonl(path: Path, metric: str | None, eval_set: str | None,
                known_metrics: list[str],
                proportions: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    from fairtrial.data.readers import iter_jsonl

    rows = []
    seen = set()
    try:
        lines = list(iter_jsonl(path))
    except ValueError as e:
        raise UserError(str(e)) from None
    for n, obj in lines:
        if "item_id" not in obj:
            raise UserError(f"{path}:{n}: item_id is missing")
        value = _value(path, n, obj)
        m = obj.get("metric", metric)
        if m is None:
            raise UserError(f"{path}:{n}: no metric; give it per line or with --metric")
        if m not in known_metrics:
            raise UserError(f'{path}:{n}: unknown metric "{m}"; known: {", ".join(known_metrics)} '
                            "(a study declares further metrics under [metrics])")
        if m in proportions and value not in (0.0, 1.0):
            raise UserError(f"{path}:{n}: {m} is a proportion (0/1 per item: right or wrong), "
                            f"got {value:g}; declare it with aggregation \"mean\" if it is not")
        es = str(obj.get("eval_set", eval_set or "test"))
        k = (str(obj["item_id"]), es, m, str(obj.get("system", "model")))
        if k in seen:
            raise UserError(f"{path}:{n}: item {k[0]} is scored twice for {m} on {es}")
        seen.add(k)
        row = {"item_id": k[0], "eval_set": es, "metric": m, "value": value,
               "system": k[3], "eval_set_digest": str(obj.get("eval_set_digest") or UNDECLARED)}
        if obj.get("item_digest"):
            row["item_digest"] = str(obj["item_digest"])
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no item scores in the file")
    return rows


def _study_items(ws: Workspace, store: Store, spec: Spec, but: str) -> dict[str, set[str]]:
    """eval_set -> the item ids the study's other arms (trained or imported, not `but`) have on
    the endpoint, from their finished score artifacts."""
    out: dict[str, set[str]] = {}
    stages = {s.name for s in spec.recipe.stages if s.emits_scores} | {IMPORT_STAGE}
    keys = {c["key"] for c in store.get_cells(spec.name)
            if c["stage"] in stages and c["arm"] != but}
    for key in sorted(keys):
        if not artifacts.verify(ws, key).ok:
            continue
        t = read_item_scores(ws.artifact(key) / FILENAME).to_pandas()
        t = t[(t["metric"] == spec.endpoint.metric) & (t["system"] == "model")]
        for es, g in t.groupby("eval_set"):
            out.setdefault(str(es), set()).update(map(str, g["item_id"]))
    return out


def _coverage(mine: set[str], known: set[str] | None) -> dict[str, Any]:
    """How an arm's items compare with the items the study's other arms have."""
    if not known:
        return {"items": len(mine), "others": 0, "same": None, "missing": 0, "extra": 0,
                "missing_ids": []}
    missing = sorted(known - mine)
    return {"items": len(mine), "others": len(known), "same": mine == known,
            "missing": len(missing), "extra": len(mine - known), "missing_ids": missing[:5]}


def _read_outputs(spec: Spec, path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Raw outputs (rows with an item id or the exact prompt, and the output text) scored by the
    recipe's own scorer (`Recipe.score_outputs`): (item-score rows, the recipe's info)."""
    if spec.recipe.score_outputs is None:
        raise UserError(f'recipe "{spec.recipe.name}" cannot score raw outputs; import item scores '
                        "instead (without --outputs)")
    if not path.exists():
        raise UserError(f"{path}: no such file")
    from fairtrial.data.readers import iter_jsonl

    try:
        lines = list(iter_jsonl(path))
        rows, info = spec.recipe.score_outputs(spec.params, lines, str(path),
                                               spec.path.parent.resolve() if spec.path else None)
    except ValueError as e:
        raise UserError(str(e)) from None
    return rows, info


def import_scores(ws: Workspace, store: Store, spec: Spec, arm: str, path: Path,
                  metric: str | None = None, eval_set: str | None = None,
                  outputs: bool = False) -> dict[str, Any]:
    if arm not in spec.external_arms:
        raise UserError(f'"{arm}" is not an external arm of study {spec.name}; declare it in '
                        f'the study file: external_arms = ["{arm}"]'
                        + (f" (external arms now: {', '.join(spec.external_arms)})"
                           if spec.external_arms else ""))
    scored: dict[str, Any] = {}
    if outputs:
        rows, scored = _read_outputs(spec, path)
        # the scorer's version and the study's data enter the key: a changed scorer or other
        # references score the outputs again
        metric = "outputs:" + ",".join(f"{s.name}={s.version}" for s in spec.recipe.stages
                                       if s.emits_scores) + ":" + digest_of(spec.params)
    else:
        rows = _read_jsonl(path, metric, eval_set, [m.name for m in spec.recipe.metrics],
                           frozenset(m.name for m in spec.recipe.metrics
                                     if m.aggregation == "proportion"))
    others = _study_items(ws, store, spec, but=arm)
    by_set: dict[str, set] = {}
    for r in rows:
        if r["metric"] == spec.endpoint.metric and r["system"] == "model":
            by_set.setdefault(r["eval_set"], set()).add(r["item_id"])
    if not by_set:
        raise UserError(f"{path}: no scores of the endpoint metric {spec.endpoint.metric} "
                        f"(metrics in the file: {', '.join(sorted({r['metric'] for r in rows}))})")
    file_digest = sha256_file(path)
    key = digest_of({"import": file_digest, "recipe": spec.recipe.name, "metric": metric,
                     "eval_set": eval_set})
    if not artifacts.verify(ws, key).ok:
        out = artifacts.new_tmp(ws, key) / "out"
        write_item_scores(out, rows)
        now = time.time()
        artifacts.commit(ws, key, out, {"recipe": spec.recipe.name, "stage": IMPORT_STAGE,
                                        "params": {"file": str(path.resolve())},
                                        "input_files": {str(path.resolve()): file_digest},
                                        "started_at": now, "ended_at": now,
                                        "summary": {"rows": len(rows)}})
    store.ensure_runs([{"key": key, "recipe": spec.recipe.name, "stage": IMPORT_STAGE,
                        "version": "1", "params": {"file": str(path.resolve())}, "seed": None,
                        "needs": {}, "input_files": {str(path.resolve()): file_digest}}], spec.name)
    store.update_run(key, state="done", summary={"rows": len(rows), "arm": arm})
    store.set_cells(spec.name, [(arm, r, IMPORT_STAGE, key) for r in spec.replicates],
                    stage=IMPORT_STAGE)
    coverage = {es: _coverage(ids, others.get(es)) for es, ids in sorted(by_set.items())}
    out = {"arm": arm, "key": key, "rows": len(rows), "eval_sets": sorted(by_set),
           "replicates": len(spec.replicates), "coverage": coverage,
           "same_items_as_study": {es: c["same"] for es, c in coverage.items()}}
    if outputs:
        out["outputs"] = {k: v for k, v in scored.items() if k != "summary"}
    return out
