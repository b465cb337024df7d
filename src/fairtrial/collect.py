"""Gather what the analysis reads from the store and the artifacts: the item-score table with
`arm` and `replicate` added, the declared vs effective params, progress and provenance.
Computes nothing new: it only reads."""

from __future__ import annotations

import platform
import shlex
import socket
import time
from collections import defaultdict
from typing import Any

import pandas as pd

from fairtrial.engine.states import derive_state
from fairtrial.scores import FILENAME, read_item_scores
from fairtrial.spec import Spec
from fairtrial.store import artifacts
from fairtrial.store.db import Store
from fairtrial.workspace import Workspace


def gather(ws: Workspace, store: Store, spec: Spec) -> dict[str, Any]:
    """Returns {"scores": DataFrame, "effective_params": [...], "progress": {...},
    "complete": bool, "provenance": {...}, "missing": [(arm, replicate, stage), ...]}."""
    cells = store.get_cells(spec.name)
    if not cells:
        from fairtrial.errors import UserError

        if spec.evaluation_only:
            raise UserError(f'study "{spec.name}" has no imported scores in this workspace '
                            f"({ws.root}); import each system first: fairtrial import "
                            f"{spec.path.name} SCORES.jsonl --arm {spec.external_arms[0]}")
        raise UserError(f'study "{spec.name}" has not been run in this workspace '
                        f"({ws.root}); run it first: fairtrial run {shlex.quote(str(spec.path))}")
    keys = sorted({c["key"] for c in cells})
    runs = store.get_runs(keys)
    from fairtrial.store.db import IMPORT_STAGE

    score_stages = {s.name for s in spec.recipe.stages if s.emits_scores} | {IMPORT_STAGE}
    frames = []
    missing = []
    verified: dict[str, dict | None] = {}
    for key in keys:
        # an artifact whose files do not match its manifest, or that was made from upstream
        # output that has since changed, is not read: the report treats it as missing
        v = artifacts.verify(ws, key)
        ok = v.ok and not artifacts.stale_inputs(ws, v.manifest)
        verified[key] = v.manifest if ok else None
    for c in cells:
        if c["stage"] not in score_stages:
            continue
        m = verified.get(c["key"])
        if m is None:
            missing.append((c["arm"], c["replicate"], c["stage"]))
            continue
        path = ws.artifact(c["key"]) / FILENAME
        if not path.exists():
            missing.append((c["arm"], c["replicate"], c["stage"]))
            continue
        df = read_item_scores(path).to_pandas()
        df["arm"] = c["arm"]
        df["replicate"] = int(c["replicate"])
        frames.append(df)
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["item_id", "eval_set", "eval_set_digest", "metric", "value", "system", "arm",
                 "replicate"])

    effective = []
    for c in cells:
        r = runs.get(c["key"]) or {}
        if r.get("adjustments"):
            effective.append({"arm": c["arm"], "replicate": c["replicate"], "stage": c["stage"],
                              "declared": r.get("params") or {},
                              "effective": r.get("effective_params") or {}})

    done = sum(1 for k in keys if verified[k] is not None)
    states = defaultdict(int)
    now, this_host = time.time(), socket.gethostname()
    for k in keys:
        # status's own rule (a running record whose process is gone is lost, too); a stage run
        # another study made counts as done here
        st = derive_state(runs.get(k), verified[k] is not None, spec.name, now, this_host)
        states["done" if st == "cached" else st] += 1
    not_run = _never_run(spec, cells, score_stages, missing)
    if not_run:
        states["pending"] += not_run
    progress = dict(states)
    progress["total"] = len(keys) + not_run

    # provenance: data digests, code versions, hosts, wall time and CPU/GPU hours per arm
    data_digests: dict[str, str] = {}
    code_versions: set[str] = set()
    hosts: set[str] = set()
    per_arm: dict[str, dict[str, float]] = defaultdict(lambda: {"wall_s": 0.0, "cpu_h": 0.0,
                                                                "gpu_h": 0.0})
    node_res = {s.name: spec.resources_for(s.name) for s in spec.recipe.stages}
    for k in keys:
        m = verified[k]
        if m:
            data_digests.update(m.get("input_files") or {})
            code_versions.add(m.get("code_version", "?"))
            hosts.add(m.get("host", "?"))
    arms_of = defaultdict(set)
    for c in cells:
        arms_of[c["key"]].add(c["arm"])
    for k in keys:
        r = runs.get(k) or {}
        d = r.get("duration_s")
        if not d:
            continue
        res = node_res.get(r.get("stage"))
        share = 1.0 / max(1, len(arms_of[k]))  # a shared run is split between the arms it serves
        for arm in arms_of[k]:
            per_arm[arm]["wall_s"] += d * share
            if res:
                per_arm[arm]["cpu_h"] += d * share * res.cpus / 3600
                per_arm[arm]["gpu_h"] += d * share * res.gpus / 3600
    provenance = {
        "study_file": str(spec.path), "study_digest": spec.digest,
        "data": data_digests, "code_version": sorted(code_versions),
        "hardware": {"hosts": sorted(hosts), "report_host": socket.gethostname(),
                     "platform": platform.platform()},
        "configs": {a.name: a.params for a in spec.arms},
        "per_arm": {a: {k2: round(v, 4) for k2, v in d.items()} for a, d in per_arm.items()},
    }
    integrity = _integrity_inputs(ws, spec, cells, verified)
    return {"scores": scores, "effective_params": effective, "progress": progress,
            "complete": done == len(keys) and not not_run, "provenance": provenance,
            "missing": missing,
            "sections": _report_sections(ws, spec, cells, verified), **integrity}


def _never_run(spec: Spec, cells: list[dict], score_stages: set[str],
               missing: list[tuple[str, int, str]]) -> int:
    """Scores imported into a study that was never run (no planned cell in the store): its
    planned stage runs (a trained arm's, or an external arm's trivial baselines) are pending, not
    absent. Adds their score cells to `missing`; returns how many stage runs the plan holds."""
    from fairtrial.store.db import IMPORT_STAGE

    if spec.evaluation_only or any(c["stage"] != IMPORT_STAGE for c in cells):
        return 0
    from fairtrial.plan import plan_for
    from fairtrial.recipes.api import StageError

    try:   # no digests: which cells the plan holds is all that is asked, not their keys
        plan = plan_for(spec)
    except (StageError, ValueError, OSError):  # `fairtrial run` reports a plan it cannot make
        return 0
    missing += [c for c in plan.cells if c[2] in score_stages]
    return len(plan.nodes)


def _report_sections(ws: Workspace, spec: Spec, cells: list[dict],
                     verified: dict[str, dict | None]) -> list[dict]:
    """The recipe's report sections (Recipe.report_sections), asked once per arm on the arm's
    first replicate's finished artifacts. A section every arm gives alike (a shared data stage's,
    such as curate's funnel) is shown once, first; the others under their arm's name."""
    hook = getattr(spec.recipe, "report_sections", None)
    if hook is None:
        return []
    per_arm = []
    for arm in spec.arms:
        rep = min(spec.replicates)
        paths = {c["stage"]: ws.artifact(c["key"]) for c in cells
                 if c["arm"] == arm.name and c["replicate"] == rep and verified.get(c["key"])}
        if paths:
            per_arm.append((arm.name, hook(paths, arm.params) or []))
    if not per_arm:
        return []
    common = [sec for sec in per_arm[0][1] if all(sec in secs for _, secs in per_arm)]
    return common + [{**sec, "title": f"{name}: {sec.get('title', '')}"}
                     for name, secs in per_arm for sec in secs if sec not in common]


def _integrity_inputs(ws: Workspace, spec: Spec, cells: list[dict],
                      verified: dict[str, dict | None]) -> dict[str, Any]:
    """Ask the recipe's integrity hook, once per arm, on the arm's first replicate's finished
    artifacts. Returns {"train_texts": {arm: [...]}, "eval_texts": {...}, "splits": [...]}."""
    from fairtrial.analysis.design import merge_integrity

    hook = spec.recipe.integrity
    per_arm: dict[str, Any] = {}
    if hook is not None:
        for arm in spec.arms:
            rep = min(spec.replicates)
            paths = {c["stage"]: ws.artifact(c["key"]) for c in cells
                     if c["arm"] == arm.name and c["replicate"] == rep and verified.get(c["key"])}
            if paths:
                per_arm[arm.name] = hook(paths, arm.params)
    return merge_integrity(per_arm)
