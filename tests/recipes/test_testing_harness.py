"""The recipe test harness (fairtrial.recipes.testing) on the engine test recipe `_test`."""

import json

import pytest

from fairtrial.recipes.api import StageContext
from fairtrial.recipes.enginetest import RECIPE
from fairtrial.recipes.enginetest import TestParams as Params
from fairtrial.recipes.registry import get
from fairtrial.recipes.testing import FakeContext, StageRunner


def test_the_moved_engine_test_recipe_keeps_its_name_and_versions():
    assert get("_test") is RECIPE
    assert RECIPE.name == "_test" and RECIPE.internal
    assert [(s.name, s.version) for s in RECIPE.stages] == [("source", "1"), ("work", "1"),
                                                             ("score", "1")]


def test_fake_context_satisfies_the_protocol(tmp_path):
    ctx = FakeContext(params={}, out=tmp_path / "out")
    assert isinstance(ctx, StageContext)
    assert ctx.out.is_dir() and ctx.checkpoint_dir == tmp_path / "out.ckpt"
    assert ctx.checkpoint_dir.is_dir()
    ctx.progress(1, 3, "step", "x")
    ctx.heartbeat()
    assert ctx.progress_calls == [(1, 3, "step", "x")] and ctx.heartbeats == 1


def test_runner_chains_stages_in_order_with_inputs_and_seed(tmp_path):
    params = Params(steps=3, n_items=7).model_dump()
    run = StageRunner(RECIPE, tmp_path, params, seed=5)
    assert run.order("score") == ["source", "work", "score"]
    summary = run.upto("score")
    assert summary == {"items": 7, "steps": 3}
    assert list(run.summaries) == ["source", "work", "score"]
    assert run.contexts["work"].seed == 5 and run.contexts["source"].seed is None
    assert run.contexts["score"].inputs == {"work": tmp_path / "work"}
    assert [c[0] for c in run.contexts["work"].progress_calls] == [1, 2, 3]
    assert (tmp_path / "score" / "item_scores.parquet").exists()


def test_runner_refuses_a_stage_whose_inputs_did_not_run(tmp_path):
    run = StageRunner(RECIPE, tmp_path, Params().model_dump())
    with pytest.raises(RuntimeError, match="needs source"):
        run.run("work")


def test_interrupt_and_resume_through_the_checkpoint_folder(tmp_path):
    params = Params(steps=4).model_dump()
    run = StageRunner(RECIPE, tmp_path, params, seed=1)
    run.run("source")

    def kill_at_2(done, total, unit, message):
        if done == 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run.run("work", on_progress=kill_at_2)
    assert json.loads((tmp_path / "work.ckpt" / "state.json").read_text())["step"] == 2
    resumed = run.run("work")
    assert resumed["resumed"] == 1 and resumed["steps"] == 4
    straight = StageRunner(RECIPE, tmp_path / "b", params, seed=1)
    straight.upto("work")
    a = json.loads((tmp_path / "work" / "model.json").read_text())
    b = json.loads((tmp_path / "b" / "work" / "model.json").read_text())
    assert a["acc"] == pytest.approx(b["acc"], abs=0) and b["resumed"] == 0


def test_stages_get_only_their_declared_params_read_only(tmp_path):
    """As from the engine: a stage reading a param outside its cache key fails in its own tests."""
    from dataclasses import replace

    from fairtrial.recipes.api import UndeclaredParam

    run = StageRunner(RECIPE, tmp_path, {"steps": 2})  # defaults filled in, as a study's arm
    ctx = run.context("source")
    assert dict(ctx.params) == {"size": 10, "data": None}
    with pytest.raises(UndeclaredParam, match="stage source reads param 'steps'"):
        ctx.params["steps"]
    with pytest.raises(TypeError):
        ctx.params["size"] = 3  # read-only

    def sneaky(ctx):
        return {"n": ctx.params.get("effect", 0.0)}  # a default does not hide an undeclared read

    recipe = replace(RECIPE, stages=(replace(RECIPE.stages[0], fn=sneaky),) + RECIPE.stages[1:])
    with pytest.raises(UndeclaredParam):
        StageRunner(recipe, tmp_path / "b", {}).run("source")
