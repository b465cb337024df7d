"""External arms get the recipe's trivial baselines: a toolcall study of external systems only
(API models compared with each other, nothing trained) runs prepare and the baselines, and the
report checks each external system against them; a mixed study plans them for its external arms
too (`Recipe.external_stages`)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fixtures import SLM  # noqa: E402

pytestmark = pytest.mark.skipif(not SLM.exists(), reason="shared data not at hand")

DATA = f"""\
[params.data]
toolcall = "{SLM / 'toolcall'}"
structured = "{SLM / 'structured'}"
max_train = 5
max_eval = 8
"""

EXTERNAL_ONLY = """\
question = "Does API system junk beat API system good on tool calls and structured JSON?"
recipe = "toolcall"
external_arms = ["good", "junk"]
control = "good"

[endpoint]
metric = "f1"

[analysis]
min_items = 3

[decision]
effect = "absolute"

""" + DATA

MIXED = """\
question = "Does the tuned small model reach the API model?"
recipe = "toolcall"
replicates = [0, 1]
external_arms = ["api"]
control = "api"

[endpoint]
metric = "f1"

[[arms]]
name = "small"
model = "some-model"

[[arms]]
name = "small-more-eval"
model = "some-model"
data = { max_eval = 9 }

""" + DATA


def _eval_items():
    from fairtrial.recipes.toolcall.data import read_items
    from fairtrial.recipes.toolcall.params import DataParams

    dp = DataParams.model_validate({"toolcall": str(SLM / "toolcall"),
                                    "structured": str(SLM / "structured"),
                                    "max_train": 5, "max_eval": 8})
    return [i for i in read_items(dp)[0] if i["part"] == "eval"]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------- plan level
def test_external_only_study_plans_prepare_and_baseline_once(make_study):
    from fairtrial.plan import plan_for
    from fairtrial.spec import load_spec

    spec = load_spec(make_study(EXTERNAL_ONLY))
    assert not spec.arms and not spec.evaluation_only      # something to run: the baselines
    assert spec.planned_external_arms == ["good", "junk"]
    assert spec.external_params["data"]["max_eval"] == 8   # resolved through the params model
    plan = plan_for(spec)
    assert sorted(n.stage for n in plan.nodes.values()) == ["baseline", "prepare"]
    assert set(plan.cells) == {(a, 0, s) for a in ("good", "junk") for s in ("prepare", "baseline")}
    base = plan.nodes[plan.cells[("good", 0, "baseline")]]
    assert sorted(base.cells) == [("good", 0), ("junk", 0)]   # one run serves both systems
    assert base.needs == {"prepare": plan.cells[("good", 0, "prepare")]}


def test_mixed_study_plans_baselines_for_the_external_arm(make_study):
    from fairtrial.plan import plan_for
    from fairtrial.spec import load_spec

    spec = load_spec(make_study(MIXED))
    assert not spec.evaluation_only
    plan = plan_for(spec)
    # the external arm: prepare and baseline only, one run standing for every replicate
    assert {k for k in plan.cells if k[0] == "api"} == {
        ("api", r, s) for r in (0, 1) for s in ("prepare", "baseline")}
    assert plan.cells[("api", 0, "baseline")] == plan.cells[("api", 1, "baseline")]
    # with the study's own params: the same runs as the arm without overrides ...
    assert plan.cells[("api", 0, "baseline")] == plan.cells[("small", 0, "baseline")]
    assert plan.cells[("api", 0, "prepare")] == plan.cells[("small", 1, "prepare")]
    # ... not the overriding arm's
    assert plan.cells[("api", 0, "prepare")] != plan.cells[("small-more-eval", 0, "prepare")]
    # the trained arms still get every stage
    assert {s for (a, _, s) in plan.cells if a == "small"} == {
        "model", "prepare", "render", "train", "generate", "score", "baseline"}


def test_mixed_study_collects_baseline_rows_for_the_external_arm(make_study, tmp_path,
                                                                   monkeypatch):
    """The external arm's planned baseline cell gives it baseline rows in the gathered item
    scores (what check_baselines compares its imported model scores with); nothing is missing
    for it although its `score` stage is never planned."""
    from fairtrial.collect import gather
    from fairtrial.importer import import_scores
    from fairtrial.plan import plan_for
    from fairtrial.recipes.testing import stage_params
    from fairtrial.recipes.toolcall import RECIPE
    from fairtrial.spec import load_spec
    from fairtrial.app import resolve
    from fairtrial.store import artifacts
    from fairtrial.app.resolve import open_store, open_workspace

    monkeypatch.setattr(resolve, "_IN_USE", {})   # the process's workspace (crash logs) is not ours
    spec = load_spec(make_study(MIXED))
    ws = open_workspace(tmp_path / "ws")
    store = open_store(ws)
    plan = plan_for(spec)
    store.ensure_runs([n.to_record() for n in plan.nodes.values()], spec.name)
    store.set_cells(spec.name, [(a, r, s, k) for (a, r, s), k in plan.cells.items()])

    # run the external arm's two stage runs by hand (the trained arms' are left undone)
    class Ctx:
        def __init__(self, node, out):
            self.params = stage_params(RECIPE, node.stage, node.params)
            self.seed, self.out = node.seed, out
            self.inputs = {n: ws.artifact(k) for n, k in node.needs.items()}
            self.checkpoint_dir = tmp_path / "ck"
            self.log = logging.getLogger("test")
            self.device = "cpu"

        def progress(self, *a, **k):
            pass

        def heartbeat(self):
            pass

    for stage in ("prepare", "baseline"):
        node = plan.nodes[plan.cells[("api", 0, stage)]]
        out = artifacts.new_tmp(ws, node.key) / "out"
        RECIPE.stage(stage).fn(Ctx(node, out))
        artifacts.commit(ws, node.key, out, {"recipe": "toolcall", "stage": stage})
        store.update_run(node.key, state="done")
    items = _eval_items()
    outputs = _write(tmp_path / "api.jsonl", [{"item_id": i["id"], "output": i["completion"]}
                                              for i in items])
    import_scores(ws, store, spec, "api", outputs, outputs=True)

    got = gather(ws, store, spec)
    api = got["scores"][got["scores"]["arm"] == "api"]
    assert set(api["system"]) == {"model", "name_only", "copy_prompt"}
    assert not [m for m in got["missing"] if m[0] == "api"]


# ------------------------------------------------------------------------- end to end
@pytest.fixture
def systems(tmp_path):
    items = _eval_items()
    # good: every answer right, but 3 toolcall items lack an output; junk: every answer wrong
    lacking = [i["id"] for i in items if i["track"] == "toolcall"][-3:]
    good = [{"item_id": i["id"], "output": i["completion"]} for i in items
            if i["id"] not in lacking]
    junk = [{"prompt": i["prompt"], "output": "I cannot help with that."} for i in items]
    return {"good": _write(tmp_path / "good.jsonl", good),
            "junk": _write(tmp_path / "junk.jsonl", junk), "lacking": lacking, "items": items}


def test_external_only_study_runs_baselines_and_checks_each_system(cli, make_study, systems):
    study = make_study(EXTERNAL_ONLY)
    chk = json.loads(cli("check", study, "--json", check=0).stdout)
    assert chk["evaluation_only"] is False and chk["arms"] == []
    assert chk["external_stages"] == ["prepare", "baseline"]
    assert [(s["stage"], s["cells"], s["runs"]) for s in chk["stages"]] == [
        ("prepare", 2, 1), ("baseline", 2, 1)]
    text = cli("check", study, check=0).stdout
    assert "external arms: good, junk" in text and "prepare, baseline" in text

    run = json.loads(cli("run", study, "--json", check=0).stdout)
    assert run["ok"] and run["stage_runs"] == 2 and run["run"] == 2 and not run["failed"]
    assert "evaluation_only" not in run

    for arm in ("good", "junk"):
        cli("import", study, systems[arm], "--arm", arm, "--outputs", check=0)
    rep = json.loads(cli("report", study, "--json", "--resamples", 300, check=0).stdout)
    findings = rep["findings"]
    codes = {f["code"] for f in findings}
    assert "missing_items" in codes and "eval_digest_mismatch" not in codes
    # the comparison is on the items both systems answered
    comps = {(c["arm"], c["eval_set"]): c for c in rep["comparisons"]}
    assert comps[("junk", "toolcall")]["n_items"] == 8 - 3
    assert comps[("junk", "structured")]["n_items"] == 8
    # the baseline check, for each external system
    flagged = {f["details"].get("arm") for f in findings if f["code"] == "baseline_not_beaten"
               and f["severity"] in ("error", "warning")}
    assert "junk" in flagged and "good" not in flagged
    base = {(c["arm"], c["reference"], c["eval_set"]): c for c in rep["baselines"]}
    assert set(base) == {(a, "baseline:" + b, e) for a in ("good", "junk")
                         for b, e in (("name_only", "toolcall"), ("copy_prompt", "structured"))}
    for b, e in (("baseline:name_only", "toolcall"), ("baseline:copy_prompt", "structured")):
        assert base[("good", b, e)]["mean_arm"] == pytest.approx(1.0)
        assert base[("junk", b, e)]["mean_arm"] == 0.0
        assert base[("good", b, e)]["diff"] > 0 >= base[("junk", b, e)]["diff"]


def test_external_only_study_of_a_recipe_without_external_stages_is_evaluation_only(make_study):
    """A recipe that declares no external stages keeps today's behaviour: nothing to run."""
    from fairtrial.plan import plan_for
    from fairtrial.spec import load_spec

    spec = load_spec(make_study("""\
        question = "q"
        recipe = "_test"
        external_arms = ["a", "b"]
        control = "a"
        [endpoint]
        metric = "score"
        """))
    assert spec.evaluation_only and spec.external_params is None
    assert not plan_for(spec).nodes


def test_bad_params_of_an_external_only_study_are_caught_by_check(cli, make_study):
    study = make_study(EXTERNAL_ONLY.replace("max_eval = 8", "max_eval = 0"))
    p = cli("check", study)
    assert p.returncode != 0
    assert "params.data.max_eval" in p.stdout + p.stderr


def test_external_stages_must_be_stages_closed_under_needs():
    from dataclasses import replace

    from fairtrial.recipes.toolcall import RECIPE

    with pytest.raises(ValueError, match="needs prepare"):
        replace(RECIPE, external_stages=("baseline",))
    with pytest.raises(ValueError, match="'nope', which is no stage"):
        replace(RECIPE, external_stages=("prepare", "nope"))
    assert RECIPE.external_stages == ("prepare", "baseline")


def test_a_report_before_the_run_says_the_baselines_are_pending(cli, make_study, systems):
    """Imported, not yet run: the report is partial (prepare and baseline pending), not silently
    complete without the baseline check."""
    study = make_study(EXTERNAL_ONLY)
    for arm in ("good", "junk"):
        cli("import", study, systems[arm], "--arm", arm, "--outputs", check=0)
    rep = json.loads(cli("report", study, "--json", "--resamples", 200, check=0).stdout)
    assert rep["complete"] is False
    assert rep["progress"]["pending"] == 2 and rep["progress"]["total"] == 4
    assert rep["headline"].startswith("PARTIAL REPORT")
