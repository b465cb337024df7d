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
    monkeypatch.setattr("fairtrial.ml.causal_lm.sft.is_quantized", lambda model: True)
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


# ------------------------------------------------------------------ the LLM judge through the stage

from _judge_server import ScriptedChatServer  # tests/recipes/curate is on sys.path

from fairtrial.recipes.curate import gsm8k
from fairtrial.recipes.curate import judge as judge_lib
from fairtrial.recipes.curate.collect import read_source
from fairtrial.recipes.curate.params import SourceParams

_FAST_EVAL = {"items": 3, "samples": 0, "k": 1}


def _endpoint_judge(server, **over):
    return {"kind": "llm", "endpoint": {"base_url": server.base_url, "model": server.model_name,
                                        "max_retries": 0, "backoff_s": 0.0, "timeout_s": 30},
            **over}


def _judged(run):
    t = read_item_scores(run.dirs["evaluate"] / "item_scores.parquet").to_pandas()
    s = json.loads((run.dirs["evaluate"] / "summary.json").read_text())
    return t, s, {m: g for m, g in t.groupby("metric")}


def test_endpoint_llm_judge_that_always_says_a_is_inconsistent_on_every_pair(tiny, part1,
                                                                               tmp_path):
    """A position-biased judge behind a real HTTP endpoint: every pair flips with the order."""
    with ScriptedChatServer("Verdict: A", model_name="biased-judge") as server:
        run = _runner(tiny, part1, tmp_path, evaluate=_FAST_EVAL,
                      judge=_endpoint_judge(server))
        run.upto("evaluate")
    t, s, by = _judged(run)
    n = 3
    j = s["judge"]
    assert j["name"] == "biased-judge" and j["kind"] == "llm"
    assert j["counts"] == {"win": 0, "tie": 0, "loss": 0, "inconsistent": n, "error": 0}
    assert j["n"] == j["judged"] == n and j["errors_first"] == []
    assert j["position_consistency"] == 0.0
    lo, hi = j["position_consistency_interval"]
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.0 < hi < 1.0   # Wilson, 0 of 3
    assert "judged_win" not in by
    ids = sorted(json.loads(x)["id"] for x in
                 (run.dirs["evaluate"] / "outputs.jsonl").read_text().splitlines())
    for metric, value in (("judged_win_as_tie", 0.5), ("judged_inconsistent", 1.0),
                          ("judged_error", 0.0)):
        assert sorted(by[metric]["item_id"]) == ids and set(by[metric]["value"]) == {value}, metric
    assert set(t["metric"]) <= {m.name for m in RECIPE.metrics}
    # both orders asked, once each: the candidate's greedy answer as A, then as B
    assert server.total == 2 * n
    assert {b["model"] for b in server.bodies} == {"biased-judge"}
    assert {b.get("temperature") for b in server.bodies} == {0.0}
    items = read_source(SourceParams(name="gsm8k", path=str(DATA / "gsm8k" / "test.jsonl"),
                                     format="gsm8k", limit=n), "raise").rows
    greedy = [json.loads(x)["greedy"] for x in
              (run.dirs["evaluate"] / "outputs.jsonl").read_text().splitlines()]
    expected = []
    for r, g in zip(items, greedy):
        sol = gsm8k.clean_solution(r.response)
        expected += [judge_lib.PAIRWISE_PROMPT.format(question=r.prompt, answer_a=a, answer_b=b)
                     for a, b in ((g, sol), (sol, g))]
    assert server.requests == {p: 1 for p in expected}
    sec = next(x for x in RECIPE.report_sections(run.dirs, run.params)
               if x["title"] == "Judged win / tie / loss")
    assert sec["table"]["rows"] == [[n, 0, 0, 0, n, 0]]
    assert "Judge biased-judge (llm)" in sec["text"] and "Position consistency 0.0%" in sec["text"]
    assert "judged_inconsistent and judged_error are item scores too" in sec["text"]


def test_endpoint_llm_judge_with_unreadable_verdicts_counts_errors_and_succeeds(tiny, part1,
                                                                               tmp_path):
    """Every answer unreadable: each game asked 1 + judge.retries times, every pair an error,
    the stage still succeeds with the errors counted and no win score written."""
    with ScriptedChatServer("I cannot decide") as server:
        run = _runner(tiny, part1, tmp_path, evaluate=_FAST_EVAL,
                      judge=_endpoint_judge(server, retries=1))
        out = run.upto("evaluate")
    assert out["items"] == 3
    _, s, by = _judged(run)
    n = 3
    j = s["judge"]
    assert j["counts"] == {"win": 0, "tie": 0, "loss": 0, "inconsistent": 0, "error": n}
    assert j["judged"] == 0 and j["errors_first"]
    assert all("unreadable verdict: 'I cannot decide'" in e for e in j["errors_first"])
    assert server.total == 2 * 2 * n                     # (1 + retries) x both orders x items
    assert set(server.requests.values()) == {2}          # every game asked twice, no more
    assert "judged_win" not in by and "judged_win_as_tie" not in by
    assert "judged_inconsistent" not in by
    assert len(by["judged_error"]) == n and set(by["judged_error"]["value"]) == {1.0}
    assert len(by["accuracy"]) == n                      # the rest of the stage is intact
    sec = next(x for x in RECIPE.report_sections(run.dirs, run.params)
               if x["title"] == "Judged win / tie / loss")
    assert sec["table"]["rows"] == [[n, 0, 0, 0, 0, n]] and "Judge errors (first)" in sec["text"]


def test_failed_judge_requests_are_retried_alone_and_a_down_judge_fails_the_stage(
        tiny, part1, tmp_path):
    """Two requests refused (503, no client retries): only those two games are asked again in
    the next round, the other answers are kept. A judge that answers nothing at all is a broken
    setup: a one-line stage error naming the judge and the last failure."""
    with ScriptedChatServer("Verdict: tie") as server:
        server.fail_next = 2
        run = _runner(tiny, part1, tmp_path / "a", evaluate=_FAST_EVAL,
                      judge=_endpoint_judge(server, retries=1))
        run.upto("evaluate")
    _, s, _ = _judged(run)
    assert s["judge"]["counts"]["tie"] == 3 and s["judge"]["counts"]["error"] == 0
    assert server.failed == 2 and server.total == 2 * 3       # no answered game asked twice
    assert any("503" in e for e in s["judge"]["errors_first"])
    down = {"kind": "llm", "name": "down-judge",
            "endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "max_retries": 0,
                         "backoff_s": 0.0, "timeout_s": 2}}
    run = _runner(tiny, part1, tmp_path / "b", evaluate=_FAST_EVAL, judge=down)
    with pytest.raises(StageError, match=r"judge down-judge: no game could be judged after 3 "
                                         r"round\(s\) \(last: .*failed 1 times"):
        run.upto("evaluate")


def test_local_model_llm_judge_runs_through_the_stage(tiny, part1, tmp_path):
    """The tiny random model as a local LLM judge: whatever it says, every judged item is
    counted once (a verdict, a flip or an error) and has its judged_error row."""
    run = _runner(tiny, part1, tmp_path, evaluate=_FAST_EVAL,
                  judge={"kind": "llm", "model": str(tiny), "name": "tiny-judge", "items": 2,
                         "retries": 0})
    run.upto("evaluate")
    t, s, by = _judged(run)
    j = s["judge"]
    assert j["name"] == "tiny-judge" and j["kind"] == "llm"
    assert j["n"] == 2 and sum(j["counts"].values()) == 2
    assert len(by["judged_error"]) == 2
    assert len(by.get("judged_inconsistent", [])) == 2 - j["counts"]["error"]
    assert len(by.get("judged_win", [])) == j["counts"]["win"] + j["counts"]["tie"] + \
        j["counts"]["loss"]
    assert set(t["metric"]) <= {m.name for m in RECIPE.metrics}


def test_judged_against_the_teachers_answers(tiny, part1, tmp_path):
    """judge.against = "teacher": the reference stage asks the teacher the students' own eval
    prompts (cached, one run for every arm and seed) and evaluate judges against those answers;
    without a teacher it is a one-line error."""
    from fairtrial.plan import make_plan

    teacher = {"model": str(tiny), "max_new_tokens": 4}
    judge = {"kind": "reference", "encoder": "random:16", "against": "teacher", "items": 2}
    run = _runner(tiny, part1, tmp_path / "a", evaluate=_FAST_EVAL, teacher=teacher, judge=judge)
    run.upto("evaluate")
    ref = [json.loads(x) for x in (run.dirs["reference"] / "reference.jsonl").read_text()
           .splitlines()]
    assert len(ref) == 2 and json.loads(
        (run.dirs["reference"] / "reference.json").read_text())["teacher"] == str(tiny)
    s = json.loads((run.dirs["evaluate"] / "summary.json").read_text())
    assert s["judge"]["against"] == "teacher" and s["judge"]["n"] == 2
    sec = next(x for x in RECIPE.report_sections(run.dirs, run.params)
               if x["title"] == "Judged win / tie / loss")
    assert "against the teacher's answers" in sec["text"]
    # the same reference run serves both arms and every seed
    params = RECIPE.params.model_validate(run.params).model_dump()
    plan = make_plan(RECIPE, [("curated", params), ("random", {**params, "train_set": "random"})],
                     [0, 1])
    refs = {k for (arm, seed, stage), k in plan.cells.items() if stage == "reference"}
    assert len(refs) == 1
    bad = _runner(tiny, part1, tmp_path / "b", evaluate=_FAST_EVAL, judge=judge)
    with pytest.raises(StageError, match=r'judge.against = "teacher" needs a teacher'):
        bad.upto("reference")
