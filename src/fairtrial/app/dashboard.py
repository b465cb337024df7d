"""The dashboard's read models (`fairtrial ui`): the studies of a workspace, one study's status,
a stage run (record, state, manifest), its log, an artifact file, the report as data and two arms
compared item by item.

The dashboard (fairtrial.web) shows nothing it computes itself: these read the store, the
artifacts and the analysis, and every number comes from `fairtrial.analysis`. Every name a client
sends is looked up among what exists (a study in the store, a stage-run key in the records, a file
name in a verified manifest) and never used as a path."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.app.report import analyse
from fairtrial.app.resolve import load, open_store, open_workspace
from fairtrial.app.status import StatusQuery
from fairtrial.errors import UserError

if TYPE_CHECKING:
    from fairtrial.spec import Spec
    from fairtrial.status import StudyStatus
    from fairtrial.workspace import Workspace


@dataclass
class Reader:
    """A workspace and its record store, opened once for a long-running reader (the dashboard)."""
    ws: Workspace
    store: Any


def reader(workspace: str | Path | None) -> Reader:
    ws = open_workspace(workspace)
    return Reader(ws=ws, store=open_store(ws))


class NotFound(UserError):
    """A study, stage run or file the client named does not exist (the dashboard answers 404)."""


def _known_study(r: Reader, name: str) -> dict[str, Any]:
    rec = r.store.get_study(name) if isinstance(name, str) and name else None
    if rec is None:
        raise NotFound(f'unknown study "{name}"')
    return rec


def _known_key(r: Reader, key: str) -> dict[str, Any]:
    # a full key only (no prefixes: the dashboard links by full key), hex digits only
    if not isinstance(key, str) or not 8 <= len(key) <= 64 or set(key) - set("0123456789abcdef"):
        raise NotFound("no such stage run")
    rec = r.store.get_run(key)
    if rec is None:
        raise NotFound(f"no stage run with key {key}")
    return rec


def dashboard_studies(r: Reader) -> list[dict[str, Any]]:
    """Every study of the workspace: name, question, recipe, state counts, ETA, whether a
    supervisor runs it, and the headline of the report last written to its folder (if any)."""
    out = []
    for s in r.store.list_studies():
        st = StatusQuery(r.ws, r.store, [s["name"]]).read()[0]
        spec = s.get("spec") or {}
        last = None
        rj = r.ws.study_dir(s["name"]) / "report.json"
        try:
            last = {"headline": json.loads(rj.read_text()).get("headline"),
                    "written_at": rj.stat().st_mtime}
        except (OSError, ValueError, AttributeError):
            pass
        out.append({"name": s["name"], "question": spec.get("question"), "recipe": s.get("recipe"),
                    "totals": st.totals, "eta_s": st.eta_s, "running": st.supervisor is not None,
                    "updated_at": s.get("updated_at"), "last_report": last,
                    "fingerprint": status_fingerprint(st)})
    return out


def status_fingerprint(st: StudyStatus) -> str:
    """A digest of which stage runs are done or cached: an analysis stays valid while it holds."""
    import hashlib

    done = sorted(k for k, v in st.runs.items() if v.state in ("done", "cached"))
    return hashlib.sha256("\n".join(done).encode()).hexdigest()[:16]


def _arms(spec: dict, st) -> list[str]:
    """The study's arms: those the study file lists, in its order, then every other arm its plan
    has (a [grid] study lists none: its arms come from the grid), then external arms."""
    listed = [a.get("name") for a in spec.get("arms") or [] if isinstance(a, dict)]
    planned = [c.arm for c in st.cells]
    external = [str(a) for a in spec.get("external_arms") or []]
    return list(dict.fromkeys(listed + planned + external))


def dashboard_study(r: Reader, name: str) -> dict[str, Any]:
    """`fairtrial status --json` of one study, with its question, recipe, arms and fingerprint."""
    rec = _known_study(r, name)
    st = StatusQuery(r.ws, r.store, [name]).read()[0]
    spec = rec.get("spec") or {}
    return {**st.to_dict(), "question": spec.get("question"), "recipe": rec.get("recipe"),
            "arms": _arms(spec, st),
            "control": spec.get("control"), "fingerprint": status_fingerprint(st)}


def dashboard_run(r: Reader, key: str) -> dict[str, Any]:
    """One stage run: its record (declared and effective params, OOM back-offs), state as status
    derives it, attempts, the cells that use it, and its verified manifest (files with digests)."""
    import socket

    from fairtrial.engine.states import derive_state
    from fairtrial.store import artifacts

    rec = _known_key(r, key)
    v = artifacts.verify(r.ws, key)
    state = derive_state(rec, v.ok, rec.get("study"), time.time(), socket.gethostname())
    manifest = None
    if v.ok and v.manifest:
        m = v.manifest
        manifest = {"files": {n: {"sha256": f.get("sha256"), "size": f.get("size")}
                              for n, f in sorted((m.get("files") or {}).items())},
                    **{k: m.get(k) for k in ("code_version", "host", "committed_at", "needs",
                                             "input_digests", "input_files", "summary")}}
    cells = r.store.cells_of_key(key)
    log = r.ws.log(key)
    return {"key": key, "recipe": rec.get("recipe"), "stage": rec.get("stage"),
            "version": rec.get("version"), "seed": rec.get("seed"), "study": rec.get("study"),
            "state": state, "recorded_state": rec.get("state"),
            "verify": "ok" if v.ok else (v.reason or "missing"),
            "params": rec.get("params") or {}, "effective_params": rec.get("effective_params"),
            "adjustments": rec.get("adjustments") or [], "attempts_count": rec.get("attempts"),
            "attempts": [{k: a.get(k) for k in ("attempt", "study", "pid", "host", "started_at",
                                                 "ended_at", "outcome", "error")}
                         for a in r.store.get_attempts(key)],
            "progress": {k: rec.get(k) for k in ("progress_done", "progress_total",
                                                  "progress_unit", "rate", "message")},
            "started_at": rec.get("started_at"), "ended_at": rec.get("ended_at"),
            "duration_s": rec.get("duration_s"), "error": rec.get("error"),
            "needs": rec.get("needs"), "cells": cells, "manifest": manifest,
            "has_log": log.exists()}


def dashboard_log(r: Reader, key: str, offset: int = -1, limit: int = 65536) -> dict[str, Any]:
    """The stage run's log from byte `offset` (-1: its last `limit` bytes), at most `limit` bytes:
    {"text", "offset" (where the next read starts), "size"}. A log that shrank is read anew."""
    _known_key(r, key)
    path = r.ws.log(key)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return {"text": "", "offset": 0, "size": 0}
    except OSError as e:
        raise NotFound(f"log of {key[:12]} cannot be read: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - limit) if offset < 0 or offset > size else offset
        f.seek(start)
        data = f.read(min(limit, size - start))
    return {"text": data.decode("utf-8", errors="replace"), "offset": start + len(data),
            "size": size}


def artifact_file(r: Reader, key: str, name: str):
    """An open binary file of a finished stage run's artifact, addressed by its key and a name its
    verified manifest lists (never a path from the caller). Refuses (NotFound) a name not in the
    manifest and a file that resolves outside the artifact folder (a symlink pointing out)."""
    from fairtrial.store import artifacts

    _known_key(r, key)
    v = artifacts.verify(r.ws, key)
    if not v.ok or not v.manifest:
        raise NotFound(f"stage run {key[:12]} has no verified artifact")
    if not isinstance(name, str) or name not in (v.manifest.get("files") or {}):
        raise NotFound(f"stage run {key[:12]} has no file of that name in its manifest")
    folder = os.path.realpath(r.ws.artifact(key))
    if not folder.startswith(os.path.realpath(r.ws.artifacts) + os.sep):
        raise NotFound(f"the artifact of {key[:12]} lies outside the workspace")
    path = os.path.join(folder, name)
    real = os.path.realpath(path)
    if real != os.path.normpath(path) or not real.startswith(folder + os.sep):
        raise NotFound(f"{name} of {key[:12]} is a link; links are not served")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise NotFound(f"{name} of {key[:12]} cannot be opened") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        f.close()
        raise NotFound(f"{name} of {key[:12]} is not a plain file")
    return f


def _stored_spec(r: Reader, name: str) -> Spec:
    rec = _known_study(r, name)
    path = rec.get("path")
    if not path or not Path(path).exists():
        raise UserError(f'study "{name}": its study file {path} no longer exists; the report '
                        "and comparisons need it")
    return load(path)


def dashboard_report(r: Reader, name: str, seed: int = 20240601,
                     resamples: int = 10_000) -> dict[str, Any]:
    """What `fairtrial report` writes, as data: the headline (its first line), verdict, integrity
    findings and the report's blocks (headings, paragraphs, tables, plots as base64 PNG)."""
    import base64

    from fairtrial.report.document import Heading, Image, Para, Table, build

    result = analyse(_stored_spec(r, name), r.ws, seed=seed, resamples=resamples, store=r.store)
    blocks: list[dict[str, Any]] = []
    for b in build(result):
        if isinstance(b, Para):
            blocks.append({"kind": "para", "text": b.text, "class": b.kind})
        elif isinstance(b, Heading):
            blocks.append({"kind": "heading", "text": b.text, "level": b.level})
        elif isinstance(b, Table):
            blocks.append({"kind": "table", "header": list(b.header),
                           "rows": [[str(c) for c in row] for row in b.rows],
                           "classes": list(b.classes)})
        elif isinstance(b, Image):
            png = b.render()
            if png:
                blocks.append({"kind": "image", "title": b.title,
                               "png": base64.b64encode(png).decode()})
    return {"study": name, "headline": result.headline, "verdict": result.verdict,
            "complete": result.complete, "progress": result.progress,
            "findings": [{"severity": f.severity, "code": f.code, "message": f.message}
                         for f in result.findings], "blocks": blocks}


def dashboard_compare(r: Reader, name: str, a: str, b: str, metric: str | None = None,
                      eval_set: str | None = None, top: int = 25) -> dict[str, Any]:
    """Two arms item by item on a metric (default: the endpoint): per item, the mean over the
    seeds both arms have of (a - b), paired on item and seed (`analysis.dashboard`); the items
    where they disagree most, with the item text where the recipe exposes it (its integrity
    hook's eval texts)."""
    from fairtrial.analysis.dashboard import arms_with_scores, eval_sets_of, paired_differences
    from fairtrial.collect import gather

    spec = _stored_spec(r, name)
    got = gather(r.ws, r.store, spec)
    scores = got["scores"]
    metric = metric or spec.endpoint.metric
    arms = arms_with_scores(scores)
    for arm in (a, b):
        if arm not in arms:
            raise NotFound(f'study "{name}" has no item scores for arm "{arm}"; arms with scores: '
                           f"{', '.join(arms) or 'none'}")
    sets = eval_sets_of(scores, metric)
    if not sets:
        raise NotFound(f'study "{name}" has no item scores for metric "{metric}"')
    eval_set = eval_set or sets[0]
    if eval_set not in sets:
        raise NotFound(f'no eval set "{eval_set}"; known: {", ".join(sets)}')
    d = paired_differences(scores, a, b, metric, eval_set, top)
    direction = next((m.direction for m in spec.recipe.metrics if m.name == metric), None) \
        if spec.recipe is not None else None
    texts = (got.get("eval_texts") or {}).get(eval_set) or {}
    items = [{"item_id": i.item_id, "a": i.a, "b": i.b, "diff": i.diff,
              "text": texts.get(i.item_id)} for i in d.items]
    return {"study": name, "a": a, "b": b, "metric": metric, "direction": direction,
            "eval_set": eval_set, "eval_sets": sets, "arms": arms, "seeds": d.seeds,
            "n_items": d.n_items, "only_a": d.only_a, "only_b": d.only_b,
            "mean_a": d.mean_a, "mean_b": d.mean_b, "mean_diff": d.mean_diff,
            "a_higher": d.a_higher, "b_higher": d.b_higher, "ties": d.ties, "items": items,
            "has_text": bool(texts)}
