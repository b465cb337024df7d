"""Item 5 of issue 9, the stage side: a read-only params view that refuses undeclared params,
item scores of undeclared metrics refused before commit, and the stage_errors helper."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fairtrial.engine.worker import _check_metrics
from fairtrial.recipes.api import (Metric, Recipe, StageError, StageParams, UndeclaredParam,
                                   stage_errors)
from fairtrial.scores import write_item_scores


def test_params_view_is_read_only_and_names_the_stage_and_declared_params():
    p = StageParams({"model": {"n": 2}, "seed_offset": None}, "train", ("model", "seed_offset"))
    assert p["model"] == {"n": 2} and p.get("seed_offset", 5) is None  # declared, even as None
    assert dict(p) == {"model": {"n": 2}, "seed_offset": None} and len(p) == 2
    with pytest.raises(UndeclaredParam) as e:
        p["train"]
    msg = str(e.value)
    assert "stage train" in msg and "'train'" in msg and "declared: model, seed_offset" in msg
    assert isinstance(e.value, KeyError) and isinstance(e.value, StageError)
    with pytest.raises(UndeclaredParam):  # a default does not hide an undeclared param
        p.get("lr", 0.1)
    with pytest.raises(TypeError):
        p["model"] = {}  # type: ignore[index]


def _recipe(*metrics: str) -> Recipe:
    from pydantic import BaseModel

    class P(BaseModel):
        pass

    return Recipe(name="r", params=P, stages=(), metrics=tuple(Metric(m, "higher") for m in metrics))


def _scores(folder: Path, *metrics: str) -> None:
    write_item_scores(folder, [{"item_id": f"i{k}", "eval_set": "test", "eval_set_digest": "d",
                                "metric": m, "value": 1.0} for m in metrics for k in range(3)])


def test_item_scores_of_an_undeclared_metric_are_refused_naming_it(tmp_path):
    _scores(tmp_path, "acc", "bleu")
    _check_metrics(tmp_path, _recipe("acc", "bleu"), "evaluate")  # all declared: fine
    with pytest.raises(StageError, match=r"stage evaluate wrote item scores of metric 'bleu', "
                                         r"which recipe r does not declare \(declared: acc\)"):
        _check_metrics(tmp_path, _recipe("acc"), "evaluate")
    _check_metrics(tmp_path / "nothing-here", _recipe(), "prepare")  # no scores: nothing to check


def test_stage_errors_turns_library_errors_into_stage_errors_with_the_same_text():
    with pytest.raises(StageError, match=r"^data: bad row 3$") as e:
        with stage_errors("data"):
            raise ValueError("bad row 3")
    assert isinstance(e.value.__cause__, ValueError)
    with pytest.raises(StageError, match=r"^\[Errno 2\] missing: 'x'$"):
        with stage_errors():
            raise FileNotFoundError(2, "missing", "x")
    with pytest.raises(StageError, match=r"^evaluate: nan \(non-finite\?\)$"):
        with stage_errors("evaluate", catch=(ValueError,), hint=" (non-finite?)"):
            raise ValueError("nan")
    with pytest.raises(OSError):  # not caught when not asked for
        with stage_errors(catch=(ValueError,)):
            raise OSError("disk")
    with pytest.raises(KeyError):  # anything else passes unchanged
        with stage_errors("data"):
            raise KeyError("k")


def _run_in_worker(tmp_path, monkeypatch, recipe: Recipe, stage: str, params: dict) -> dict:
    """One stage run through the worker's real code path (run_task), in this process."""
    from fairtrial.engine.worker import run_task
    from fairtrial.recipes import registry
    from fairtrial.store.db import Store
    from fairtrial.workspace import Workspace

    monkeypatch.setattr(registry, "get", lambda name: recipe)
    ws = Workspace(tmp_path / "ws").ensure()
    store = Store(ws.db_url)
    key = "ab" * 32
    task = {"key": key, "recipe": recipe.name, "stage": stage, "attempt": 1, "params": params,
            "declared_params": params, "seed": None, "inputs": {}, "needs": {},
            "input_files": {}, "study": "s"}
    try:
        return run_task(task, store, ws, type("HB", (), {"key": None})())
    finally:
        store.dispose()


def test_the_worker_fails_a_stage_that_reads_an_undeclared_param(tmp_path, monkeypatch):
    from fairtrial.recipes.api import Stage
    from fairtrial.store import artifacts

    def fn(ctx):
        return {"lr": ctx.params["lr"]}  # declared: only "size"

    rec = replace(_recipe(), stages=(Stage("train", fn, params=("size",)),))
    got = _run_in_worker(tmp_path, monkeypatch, rec, "train", {"size": 3})
    assert got["outcome"] == "failed", got
    assert got["error"].startswith("stage train reads param 'lr', which it does not declare "
                                   "(declared: size)"), got["error"]
    assert "traceback" not in got["error"]  # a StageError: its message only
    from fairtrial.workspace import Workspace

    assert not artifacts.verify(Workspace(tmp_path / "ws"), "ab" * 32).ok  # nothing committed


def test_the_worker_refuses_to_commit_scores_of_an_undeclared_metric(tmp_path, monkeypatch):
    from fairtrial.recipes.api import Stage
    from fairtrial.store import artifacts
    from fairtrial.workspace import Workspace

    def fn(ctx):
        _scores(ctx.out, "acc", "f1")

    rec = replace(_recipe("acc"), stages=(Stage("evaluate", fn, emits_scores=True),))
    got = _run_in_worker(tmp_path, monkeypatch, rec, "evaluate", {})
    assert got["outcome"] == "failed" and "metric 'f1'" in got["error"], got
    assert not artifacts.verify(Workspace(tmp_path / "ws"), "ab" * 32).ok
    ok = replace(_recipe("acc", "f1"), stages=rec.stages)
    got = _run_in_worker(tmp_path, monkeypatch, ok, "evaluate", {})
    assert got["outcome"] == "done", got
    assert artifacts.verify(Workspace(tmp_path / "ws"), "ab" * 32).ok
