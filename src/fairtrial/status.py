"""Status that cannot lie: derived from artifacts, records and process liveness, never from claims
(the rule: `fairtrial.engine.states.derive_state`, which the report's progress counts use too).

done     a verified manifest exists, produced for this study
cached   a verified manifest exists, produced earlier by another study (shared by key)
running  the record says running, its process is alive on this host and its heartbeat is recent
lost     the record says running but the process is gone or the heartbeat is stale
failed   the last attempt failed (first line of the error)
pending  anything else (never started, interrupted, waiting for a retry)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fairtrial.base.process import alive
from fairtrial.engine.context import STALE_S
from fairtrial.engine.states import derive_state
from fairtrial.store import artifacts
from fairtrial.workspace import Workspace

if TYPE_CHECKING:
    from fairtrial.store.db import Store


@dataclass
class RunStatus:
    key: str
    stage: str
    state: str
    arms: list[str] = field(default_factory=list)
    attempts: int = 0
    progress: float | None = None
    progress_total: float | None = None
    unit: str | None = None
    rate: float | None = None
    eta_s: float | None = None
    duration_s: float | None = None
    error: str | None = None
    message: str | None = None
    adjustments: list | None = None
    shared: bool = False


@dataclass
class Cell:
    arm: str
    replicate: int
    stage: str
    key: str
    state: str


@dataclass
class StudyStatus:
    study: str
    supervisor: dict | None
    runs: dict[str, RunStatus]
    cells: list[Cell]
    totals: dict[str, int]
    eta_s: float | None
    generated_at: float
    stages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # vars() rather than dataclasses.asdict: asdict deep-copies, too slow for 10,000 runs
        return {"study": self.study, "supervisor": self.supervisor, "totals": self.totals,
                "eta_s": self.eta_s, "generated_at": self.generated_at, "stages": self.stages,
                "runs": {k: vars(v) for k, v in self.runs.items()},
                "cells": [vars(c) for c in self.cells]}


def study_status(ws: Workspace, store: Store, study: str, verify: bool = False,
                 stale_s: float = STALE_S) -> StudyStatus:
    import socket

    now = time.time()
    this_host = socket.gethostname()
    cells_rows = store.get_cells(study)
    keys = sorted({c["key"] for c in cells_rows})
    all_records = store.status_rows()
    records = {k: all_records[k] for k in keys if k in all_records}
    from fairtrial.engine.pidfile import read_supervisor

    sup = read_supervisor(ws.study_dir(study) / "supervisor.json")
    if sup and alive(sup.get("pid"), sup.get("pid_started"), host=sup.get("host"),
                     this_host=this_host) is False:
        sup = None
    arms_of: dict[str, set] = {}     # key -> arms it serves
    n_cells: dict[str, int] = {}     # key -> cells (arm x replicate) it serves
    stage_of: dict[str, str] = {}
    for c in cells_rows:
        k = c["key"]
        arms_of.setdefault(k, set()).add(c["arm"])
        n_cells[k] = n_cells.get(k, 0) + 1
        stage_of[k] = c["stage"]
    recipe = next((r["recipe"] for r in records.values()), None)
    history: dict[str, list[float]] = {}
    for r in all_records.values():
        if r["recipe"] == recipe and r["duration_s"] is not None:
            history.setdefault(r["stage"], []).append(r["duration_s"])
    runs: dict[str, RunStatus] = {}
    for key in keys:
        rec = records.get(key)
        # the manifest is read and every file's size and times checked against it (a file whose
        # times changed is re-hashed); --verify re-hashes every file
        v = artifacts.verify(ws, key, full=verify)
        ok, why = v.ok, ("" if v.reason == "missing" else v.reason)
        stage = rec["stage"] if rec else stage_of[key]
        if ok:  # the common case, inlined: 10,000 runs must take a fraction of a second
            state = "cached" if rec and rec["study"] not in (None, study) else "done"
        else:
            state = derive_state(rec, ok, study, now, this_host, stale_s)
        arms = arms_of[key]
        rs = RunStatus(key=key, stage=stage, state=state,
                       arms=sorted(arms) if len(arms) > 1 else list(arms),
                       shared=n_cells[key] > 1)
        if rec:
            rs.attempts = rec.get("attempts") or 0
            rs.duration_s = rec.get("duration_s")
            rs.adjustments = rec.get("adjustments") or None
            if state == "failed" and rec.get("error"):
                rs.error = rec["error"].strip().splitlines()[0]
            if state == "lost" and rec.get("state") == "running":
                rs.error = "process gone or heartbeat stale; `fairtrial run` resumes it"
            elif state == "lost":
                rs.error = (f"its artifact is {'missing' if not why else 'corrupt: ' + why}; "
                            "`fairtrial run` runs it again")
            if state == "running":
                rs.progress = rec.get("progress_done")
                rs.progress_total = rec.get("progress_total")
                rs.unit = rec.get("progress_unit")
                rs.rate = rec.get("rate")
                rs.message = rec.get("message")
                rs.eta_s = _eta_running(rec, history.get(stage), now)
        if state in ("pending", "lost") and history.get(stage):
            rs.eta_s = statistics.median(history[stage])
        runs[key] = rs
    cells = [Cell(c["arm"], c["replicate"], c["stage"], c["key"], runs[c["key"]].state)
             for c in sorted(cells_rows, key=lambda c: (c["arm"], c["replicate"]))]
    totals: dict[str, int] = {}
    for r in runs.values():
        totals[r.state] = totals.get(r.state, 0) + 1
    totals["total"] = len(runs)
    # the stage order was stored with the study: importing the recipe (torch, ...) would make
    # status slow
    srec = store.get_study(study)
    stages = list(((srec or {}).get("spec") or {}).get("_stages") or [])
    return StudyStatus(study=study, supervisor=sup, runs=runs, cells=cells, totals=totals,
                       eta_s=_eta_study(runs), generated_at=now, stages=stages)


def _eta_running(rec: dict, history: list[float] | None, now: float) -> float | None:
    done, total, rate = rec.get("progress_done"), rec.get("progress_total"), rec.get("rate")
    if total and rate and rate > 0 and done is not None:
        return max(0.0, (total - done) / rate)
    if history and rec.get("started_at"):
        return max(0.0, statistics.median(history) - (now - rec["started_at"]))
    return None


def _eta_study(runs: dict[str, RunStatus]) -> float | None:
    """Remaining work: the longest running ETA plus the estimated pending work, as if run one at a
    time (a conservative bound; the engine runs independent stages in parallel). None when a
    pending stage has no history yet."""
    todo = [r for r in runs.values() if r.state in ("pending", "lost", "running")]
    if not todo:
        return 0.0
    total = 0.0
    for r in todo:
        if r.eta_s is None:
            return None
        total += r.eta_s
    return total
