"""curate part 2: teacher -> train -> merge -> quantize -> evaluate on a tiny 2-layer chat model
(seconds), through the recipe harness, after a small part-1 chain run once per module."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "toolcall"))
from _fixtures import tiny_model

from fairtrial.recipes.api import StageError
from fairtrial.recipes.curate import RECIPE
from fairtrial.recipes.testing import StageRunner, kill_at
from fairtrial.scores import read_item_scores

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
PART1 = ("collect", "quality", "language", "dedup", "select")

pytestmark = pytest.mark.skipif(not (DATA / "gsm8k").exists(), reason="shared data not at hand")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _params(tiny, **over):
    p = {"sources": [{"name": "gsm8k-train", "path": str(DATA / "gsm8k" / "train.jsonl"),
                      "format": "gsm8k", "limit": 60}],
         "eval_sets": [{"name": "gsm8k-test", "path": str(DATA / "gsm8k" / "test.jsonl"),
                        "format": "gsm8k", "limit": 64}],
         "language": {"enabled": False},
         "select": {"arms": ["curated", "random"], "size": 16, "seed": 0},
         "student": str(tiny),
         "train": {"steps": 3, "micro_batch": 4, "lr": 1e-3, "checkpoint_every": 2,
                   "max_len": 256},
         "evaluate": {"path": str(DATA / "gsm8k" / "test.jsonl"), "items": 6,
                      "max_new_tokens": 8, "samples": 3, "k": 2},
         "judge": {"kind": "reference", "encoder": "random:16"}}
    for k, v in over.items():
        p[k] = {**p[k], **v} if isinstance(v, dict) and isinstance(p.get(k), dict) else v
    return p


@pytest.fixture(scope="module")
def part1(tiny, tmp_path_factory):
    run = StageRunner(RECIPE, tmp_path_factory.mktemp("part1"), _params(tiny))
    run.upto("select")
    return {s: run.dirs[s] for s in PART1}


def _runner(tiny, part1, root, seed=0, **over):
    return StageRunner(RECIPE, root, _params(tiny, **over), seed=seed, dirs=part1)


def test_chain_writes_every_metric_and_the_report_sections(tiny, part1, tmp_path):
    run = _runner(tiny, part1, tmp_path)
    run.upto("evaluate")
    assert json.loads((run.dirs["teacher"] / "teacher.json").read_text())["responder"] == "dataset"
    info = json.loads((run.dirs["train"] / "train.json").read_text())
    assert info["examples"] == 16 and not info["quantized_base"]
    mc = json.loads((run.dirs["merge"] / "merge_check.json").read_text())
    assert mc["passed"] and mc["n_prompts"] == 64 and mc["top1_agreement"] == 1.0
    t = read_item_scores(run.dirs["evaluate"] / "item_scores.parquet").to_pandas()
    counts = t.groupby("metric")["item_id"].nunique().to_dict()
    assert {counts[m] for m in ("accuracy", "unparsed", "maj_at_k", "consistency")} == {6}
    judged = t[t.metric == "judged_win_as_tie"]
    assert len(judged) == 6 and set(judged["value"]) <= {0.0, 0.5, 1.0}
    declared = {m.name for m in RECIPE.metrics}
    assert set(t["metric"]) <= declared
    s = json.loads((run.dirs["evaluate"] / "summary.json").read_text())
    assert sum(s["judge"]["counts"].values()) == 6
    titles = [x["title"] for x in RECIPE.report_sections(run.dirs, run.params)]
    assert titles[0] == "Curation funnel"
    assert titles[-3:] == ["Merge check", "GSM8K accuracy, maj@k and consistency",
                           "Judged win / tie / loss"]


def test_train_resumes_to_the_straight_runs_losses(tiny, part1, tmp_path):
    straight = _runner(tiny, part1, tmp_path / "a", seed=1, train={"steps": 4})
    straight.upto("train")
    resumed = _runner(tiny, part1, tmp_path / "b", seed=1, train={"steps": 4})
    resumed.run("teacher")
    with pytest.raises(KeyboardInterrupt):
        resumed.run("train", on_progress=kill_at(3, "step"))
    resumed.run("train")

    def losses(run):
        return [json.loads(x)["loss"] for x in
                (run.dirs["train"] / "train_log.jsonl").read_text().splitlines()]

    assert len(losses(straight)) == 4
    assert losses(resumed) == pytest.approx(losses(straight), abs=1e-6)


def test_local_teacher_answers_are_cached_and_resumed(tiny, part1, tmp_path):
    run = _runner(tiny, part1, tmp_path, teacher={"model": str(tiny), "max_new_tokens": 4,
                                                   "batch_size": 4})
    with pytest.raises(KeyboardInterrupt):
        run.run("teacher", on_progress=kill_at(8, "item"))
    answers = tmp_path / "teacher.ckpt" / "answers.jsonl"
    assert len(answers.read_text().splitlines()) == 8       # two batches kept
    run.run("teacher", on_progress=kill_at(4, "item"))      # the kept ones are not asked again
    t = pd.read_parquet(run.dirs["teacher"] / "train.parquet")
    assert len(t) == 16 and set(t["responder"]) == {str(tiny)}
    assert len(answers.read_text().splitlines()) == 16


def test_failed_merge_check_fails_the_stage_or_is_reported_when_allowed(tiny, part1, tmp_path,
                                                                        monkeypatch):
    def broken(peft_model):             # a merge that loses the update (returns the base)
        return peft_model.unload()

    monkeypatch.setattr("fairtrial.ml.causal_lm.merge_check.merge", broken)
    over = {"train": {"steps": 6, "lr": 3e-2}}
    run = _runner(tiny, part1, tmp_path / "a", **over)
    run.upto("train")
    with pytest.raises(StageError, match=r"merge check FAILED on 64 held-out prompts.*"
                                         r"merge\.allow_failed_check"):
        run.run("merge")
    assert not (run.dirs.get("merge", tmp_path / "a" / "merge") / "model").exists()
    ok = _runner(tiny, part1, tmp_path / "b", merge={"allow_failed_check": True}, **over)
    ok.upto("merge")
    titles = [x["title"] for x in RECIPE.report_sections(ok.dirs, ok.params)]
    assert "Integrity: merge check failed" in titles


def test_quantized_student_is_refused_unless_allowed(tiny, part1, tmp_path, monkeypatch):
    monkeypatch.setattr("fairtrial.recipes.curate.distill._is_quantized", lambda model: True)
    run = _runner(tiny, part1, tmp_path)
    run.run("teacher")
    with pytest.raises(StageError, match=r"is quantised.*student\.allow_quantized = true"):
        run.run("train")


def test_quantize_records_sizes_and_evaluate_scores_the_int8_copy(tiny, part1, tmp_path):
    run = _runner(tiny, part1, tmp_path, quantize={"enabled": True},
                  evaluate={"samples": 0, "k": 1}, judge={"kind": "none"})
    run.upto("evaluate")
    q = json.loads((run.dirs["quantize"] / "quantize.json").read_text())
    assert 0 < q["int8_bytes"] < q["float_bytes"]
    t = read_item_scores(run.dirs["evaluate"] / "item_scores.parquet").to_pandas()
    assert set(t["metric"]) == {"accuracy", "unparsed"}


def test_aa_study_gives_no_supported_verdict(tiny, part1, tmp_path):
    """Two arms trained on the same set (A/A): no endpoint may come out "supported"."""
    from fairtrial.analysis import Decision, Endpoint, StudyDesign, analyze

    frames = []
    arms = {"a": {"train_set": "random"}, "b": {"train_set": "random"}}
    for arm in arms:
        for seed in (0, 1):
            run = _runner(tiny, part1, tmp_path / f"{arm}{seed}", seed=seed,
                          train_set="random", judge={"kind": "none"})
            run.upto("evaluate")
            t = read_item_scores(run.dirs["evaluate"] / "item_scores.parquet").to_pandas()
            frames.append(t.assign(arm=arm, replicate=seed))
    scores = pd.concat(frames, ignore_index=True)
    for metric in ("accuracy", "maj_at_k", "consistency"):
        m = next(x for x in RECIPE.metrics if x.name == metric)
        design = StudyDesign(question="A/A", arms=arms, control="a", replicates=(0, 1),
                             endpoint=Endpoint(metric, m.direction), decision=Decision(),
                             metric_aggregations={metric: m.aggregation}, min_items=1)
        res = analyze(scores[scores.metric == metric], design, n_resamples=200)
        primary = [c for c in res.comparisons if c.metric == metric and c.arm == "b"]
        assert primary and all(c.verdict != "supported" for c in res.comparisons), metric


def test_bad_inputs_are_clear_errors(tiny):
    import pydantic

    def bad(over, match):
        with pytest.raises(pydantic.ValidationError, match=match):
            RECIPE.params.model_validate(_params(tiny, **over))

    bad({"judge": {"kind": "llm", "model": "x", "prompt": "Which is better? {answer_a}"}},
        r"\{answer_b\}")
    bad({"evaluate": {"samples": 2, "k": 4}}, r"evaluate\.k = 4 is larger than evaluate\.samples")
    bad({"teacher": {"endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "Llama-70B"}},
         "judge": {"kind": "llm", "endpoint": {"base_url": "http://127.0.0.1:9/v1",
                                               "model": "llama-70b"}}},
        r"the judge 'llama-70b' is also the teacher")
    bad({"judge": {"kind": "llm"}}, r"judge\.kind = \"llm\" needs exactly one of")


def test_endpoint_down_and_unset_key_are_one_line_errors(tiny, part1, tmp_path, monkeypatch):
    monkeypatch.delenv("FT_TEST_NO_KEY", raising=False)
    ep = {"base_url": "http://127.0.0.1:9/v1", "model": "teacher-x", "max_retries": 1,
          "backoff_s": 0.0, "timeout_s": 2}
    run = _runner(tiny, part1, tmp_path / "a", teacher={"endpoint": ep})
    with pytest.raises(StageError, match=r"teacher: .*failed 2 times.*0 of 16 answers are kept"):
        run.run("teacher")
    run = _runner(tiny, part1, tmp_path / "b",
                  teacher={"endpoint": {**ep, "api_key_env": "FT_TEST_NO_KEY"}})
    with pytest.raises(StageError, match=r"FT_TEST_NO_KEY is not set"):
        run.run("teacher")


def test_judge_that_is_a_contestant_is_an_integrity_finding(tiny, part1, tmp_path):
    run = _runner(tiny, part1, tmp_path, evaluate={"samples": 0, "k": 1},
                  judge={"kind": "reference", "encoder": "random:16", "name": str(tiny)})
    run.upto("evaluate")
    sections = RECIPE.report_sections(run.dirs, run.params)
    hits = [s for s in sections if s["title"] == "Integrity: judge"]
    assert len(hits) == 1 and "is also a contestant" in hits[0]["text"]


def test_oom_policy_halves_the_micro_batch_and_keeps_the_effective_batch():
    from fairtrial.recipes.curate.params import oom_policy

    params = {"train": {"steps": 3, "micro_batch": 8, "grad_accum": 2}, "student": "x"}
    assert oom_policy(params) == {"train": {"steps": 3, "micro_batch": 4, "grad_accum": 4},
                                  "student": "x"}
    assert oom_policy({"train": {}})["train"] == {"micro_batch": 2, "grad_accum": 2}
    assert oom_policy({"train": {"micro_batch": 1}}) is None
