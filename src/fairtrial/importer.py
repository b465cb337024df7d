"""`fairtrial import`: item scores produced elsewhere (a hosted API model's scored outputs, say)
become an external arm of a study, so they can be compared with, or be, the control.

The file is JSONL, one object per item and metric:
  {"item_id": "...", "value": 0.83, "metric": "args_f1", "eval_set": "test"}
`metric` and `eval_set` may be given once on the command line instead; `eval_set_digest` and
`system` are optional. An external arm is one fixed system: its scores stand for every seed of the
study (zero seed variance), which keeps the comparison paired by seed.

When the file gives no `eval_set_digest`, the digest is taken from the study's own scores for that
eval set if the imported item ids are exactly that set's ids, else computed from the imported ids;
so an import on different items shows up as an integrity finding, not as a silent comparison.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from fairtrial.errors import UserError
from fairtrial.plan import digest_of
from fairtrial.scores import FILENAME, eval_set_digest, read_item_scores, write_item_scores
from fairtrial.spec import Spec
from fairtrial.store import artifacts
from fairtrial.store.db import IMPORT_STAGE, Store
from fairtrial.store.digests import sha256_file
from fairtrial.workspace import Workspace


def _read_jsonl(path: Path, metric: str | None, eval_set: str | None,
                known_metrics: list[str]) -> list[dict[str, Any]]:
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
        value = obj.get("value", obj.get("score"))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{path}:{n}: value must be a finite number, got {value!r}")
        m = obj.get("metric", metric)
        if m is None:
            raise UserError(f"{path}:{n}: no metric; give it per line or with --metric")
        if m not in known_metrics:
            raise UserError(f'{path}:{n}: unknown metric "{m}"; known: {", ".join(known_metrics)}')
        es = str(obj.get("eval_set", eval_set or "test"))
        k = (str(obj["item_id"]), es, m, str(obj.get("system", "model")))
        if k in seen:
            raise UserError(f"{path}:{n}: item {k[0]} is scored twice for {m} on {es}")
        seen.add(k)
        row = {"item_id": k[0], "eval_set": es, "metric": m, "value": float(value),
               "system": k[3]}
        if obj.get("eval_set_digest"):
            row["eval_set_digest"] = str(obj["eval_set_digest"])
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no item scores in the file")
    return rows


def _study_digests(ws: Workspace, store: Store, spec: Spec) -> dict[str, tuple[str, frozenset]]:
    """eval_set -> (digest, item ids) from the study's own finished score artifacts."""
    out: dict[str, tuple[str, frozenset]] = {}
    stages = {s.name for s in spec.recipe.stages if s.emits_scores}
    for c in store.get_cells(spec.name):
        if c["stage"] not in stages or not artifacts.verify(ws, c["key"]).ok:
            continue
        t = read_item_scores(ws.artifact(c["key"]) / FILENAME).to_pandas()
        for es, g in t.groupby("eval_set"):
            if es not in out:
                out[es] = (g["eval_set_digest"].iloc[0], frozenset(g["item_id"]))
    return out


def import_scores(ws: Workspace, store: Store, spec: Spec, arm: str, path: Path,
                  metric: str | None = None, eval_set: str | None = None) -> dict[str, Any]:
    if arm not in spec.external_arms:
        raise UserError(f'"{arm}" is not an external arm of study {spec.name}; declare it in '
                        f'the study file: external_arms = ["{arm}"]'
                        + (f" (external arms now: {', '.join(spec.external_arms)})"
                           if spec.external_arms else ""))
    rows = _read_jsonl(path, metric, eval_set, [m.name for m in spec.recipe.metrics])
    own = _study_digests(ws, store, spec)
    by_set: dict[str, set] = {}
    for r in rows:
        by_set.setdefault(r["eval_set"], set()).add(r["item_id"])
    digests = {}
    for es, ids in by_set.items():
        if es in own and own[es][1] == frozenset(ids):
            digests[es] = own[es][0]
        else:
            digests[es] = eval_set_digest(sorted(ids))
    for r in rows:
        r.setdefault("eval_set_digest", digests[r["eval_set"]])
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
    matched = {es: own.get(es, (None,))[0] == d for es, d in digests.items()}
    return {"arm": arm, "key": key, "rows": len(rows), "eval_sets": sorted(by_set),
            "same_items_as_study": matched}
