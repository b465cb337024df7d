"""Workspaces for the dashboard's tests.

`built` makes a workspace the fast way: the real plan (real keys, cells and study record) of two
studies of the engine's test recipe, with artifacts committed through the store's own `commit`
and records written through the store, without running the engine (the browser tests run it for
real). Study "study" is finished (item scores per arm: 1 + effect + noise, paired on items and
seeds); study "broken" has a failed work run. One extra artifact holds a symlink pointing out of
the workspace, at a file of secret bytes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from fairtrial.app import dashboard, resolve
from fairtrial.scores import eval_set_digest, write_item_scores
from fairtrial.store import artifacts
from tests.conftest import study_text

SECRET = b"TOP-SECRET-OUTSIDE-THE-WORKSPACE-4f1c"
TOKEN = "test-token-123"


def _commit(ws, store, study: str, node, files: dict[str, bytes | None], rows=None,
            adjustments=None, effective=None) -> None:
    tmp = artifacts.new_tmp(ws, node.key)
    out = tmp / "out"
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    if rows is not None:
        write_item_scores(out, rows)
    artifacts.commit(ws, node.key, out, {
        "recipe": node.recipe, "stage": node.stage, "version": node.version,
        "params": node.params, "effective_params": effective or node.params,
        "adjustments": adjustments or [], "seed": node.seed, "needs": node.needs,
        "input_digests": {}, "input_digest_kind": artifacts.INPUT_DIGESTS,
        "input_files": node.input_files, "study": study, "summary": {}})
    _record(ws, store, study, node.key, "done", adjustments=adjustments, effective=effective)


def _record(ws, store, study, key, outcome, error=None, adjustments=None, effective=None):
    store.start_attempt(key, study, os.getpid(), socket.gethostname())
    store.end_attempt(key, outcome, error, state=outcome, duration_s=0.25,
                      adjustments=adjustments or [], effective_params=effective)
    ws.log(key).write_text(f"stage {key[:12]} started\n" + (error or "finished") + "\n")


def _plan(ws, store, path: Path):
    spec = resolve.load(path)
    p = resolve.plan(spec, ws)
    store.upsert_study(spec.name, str(spec.path), spec.recipe.name, spec.digest,
                       dict(spec.raw, _stages=[s.name for s in spec.recipe.stages]))
    store.ensure_runs([n.to_record() for n in p.nodes.values()], spec.name)
    store.set_cells(spec.name, [(a, r, s, k) for (a, r, s), k in p.cells.items()])
    return spec, p


def score_rows(node, n_items: int = 30) -> list[dict]:
    ids = [f"item{i:05d}" for i in range(n_items)]
    digest = eval_set_digest(ids)
    base = 1.0 + np.random.default_rng(12345).normal(scale=0.5, size=n_items)
    rng = np.random.default_rng([node.seed or 0, 7, int(node.params["effect"] * 10)])
    values = base + node.params["effect"] + rng.normal(scale=0.3, size=n_items)
    return [{"item_id": i, "eval_set": "test", "eval_set_digest": digest, "metric": "score",
             "value": float(v)} for i, v in zip(ids, values)]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webws")
    (tmp / "outside.txt").write_bytes(SECRET)
    (tmp / "study.toml").write_text(study_text(params="n_items = 30\noom_above = 2"))
    (tmp / "broken.toml").write_text(study_text(params="size = 12", better='fail = true\nfail_message = "bad batch '
                                                       'in shard 3"').replace(
        'question = "Does the effect help?"', 'name = "broken"\nquestion = "Does it break?"'))
    ws = resolve.open_workspace(tmp / "ws")
    store = resolve.open_store(ws)
    spec, p = _plan(ws, store, tmp / "study.toml")
    keys = {}
    for key, node in p.nodes.items():
        keys.setdefault(node.stage, []).append(key)
        if node.stage == "score":
            _commit(ws, store, spec.name, node, {}, rows=score_rows(node))
        elif node.stage == "work":  # trained with two OOM back-offs, as the engine records them
            adj = [{"changed": {"micro_batch": [8, 4], "grad_accum": [1, 2]}},
                   {"changed": {"micro_batch": [4, 2], "grad_accum": [2, 4]}}]
            eff = dict(node.params, micro_batch=2, grad_accum=4)
            _commit(ws, store, spec.name, node, {"model.json": b'{"step": 1}'},
                    adjustments=adj, effective=eff)
        else:
            _commit(ws, store, spec.name, node, {"data.json": b'{"values": [1, 2]}',
                                                 "sub/notes.txt": b"hello\n"})
    bspec, bp = _plan(ws, store, tmp / "broken.toml")
    for key, node in bp.nodes.items():
        if node.stage == "work" and node.params.get("fail"):
            _record(ws, store, bspec.name, key, "failed", error="bad batch in shard 3\nTraceback...")
    # an artifact with a symlink pointing out of the workspace (a stage could write one)
    link_node = next(n for n in bp.nodes.values() if n.stage == "source")
    tmpdir = artifacts.new_tmp(ws, link_node.key)
    (tmpdir / "out" / "ok.txt").write_text("fine\n")
    os.symlink(tmp / "outside.txt", tmpdir / "out" / "leak.txt")
    m = artifacts.commit(ws, link_node.key, tmpdir / "out", {"stage": "source", "params": {}})
    assert m["_committed"] and "leak.txt" in m["files"]  # its own key, not shared with "study"
    _record(ws, store, bspec.name, link_node.key, "done")
    store.dispose()
    return {"tmp": tmp, "ws": ws, "keys": keys, "link_key": link_node.key,
            "failed_key": next(k for k, n in bp.nodes.items() if n.stage == "work" and n.params.get("fail")),
            "plan": p, "spec": spec}


@pytest.fixture(scope="session")
def reader(built):
    r = dashboard.reader(built["ws"].root)
    yield r
    r.store.dispose()


@pytest.fixture(scope="session")
def client(reader):
    from fastapi.testclient import TestClient

    from fairtrial.web import create_app

    app = create_app(reader, TOKEN, {"testserver"}, resamples=200)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def wait_for(pred, timeout: float, what: str, every: float = 0.1):
    """Poll `pred` until it returns something true; fail naming `what` after `timeout` s."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last seen: {last!r})")


def loads(resp):
    return json.loads(resp.content)
