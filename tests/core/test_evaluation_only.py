"""Evaluation-only studies (issue 14): external arms only, metrics declared in the study file,
item coverage compared pair by pair, one replicate said plainly, values as they come.

The statistics are checked against a hand computation on the shared items: the same paired
bootstrap (same seed and resamples) must give the report's numbers exactly, and an exact McNemar
test from scipy must agree with the verdicts' direction and significance.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from fairtrial.stats.bootstrap import percentile_interval, two_level

REPO = Path(__file__).resolve().parents[2]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k" / "test.jsonl"

N = 400          # items of the eval set
LACKING = 60     # items system "c" has no answer for
RESAMPLES = 2000
SEED = 7

STUDY = """\
question = "Do systems b and c answer more questions right than system a?"
external_arms = ["a", "b", "c"]
control = "a"
{extra}
[metrics]
accuracy = {{ direction = "higher", aggregation = "proportion" }}
latency_ms = {{ direction = "lower", aggregation = "geomean" }}

[endpoint]
metric = "accuracy"
secondary = ["latency_ms"]

[decision]
min_effect = 0.0
effect = "absolute"
alpha = 0.05
correction = "holm"
"""


def outcomes() -> dict[str, np.ndarray]:
    """0/1 correctness per item: b is far better than a, c about as good as a."""
    rng = np.random.default_rng(2026)
    easy = rng.random(N)                      # shared item difficulty: paired outcomes
    return {"a": (easy < 0.55).astype(float),
            "b": (easy < 0.75).astype(float),
            "c": ((easy < 0.55) ^ (rng.random(N) < 0.08)).astype(float)}


def items_of(arm: str) -> list[int]:
    return list(range(N))[LACKING:] if arm == "c" else list(range(N))


def write_systems(folder: Path) -> dict[str, Path]:
    """One JSONL per system; a's values as JSON booleans, the others as numbers."""
    out = {}
    y = outcomes()
    for arm in "abc":
        lines = []
        for i in items_of(arm):
            value = bool(y[arm][i]) if arm == "a" else float(y[arm][i])
            lines.append(json.dumps({"item_id": f"q{i:04d}", "metric": "accuracy",
                                     "value": value, "eval_set": "bench"}))
            lines.append(json.dumps({"item_id": f"q{i:04d}", "metric": "latency_ms",
                                     "value": 100.0 + i % 7 + (arm == "b") * 30, "eval_set": "bench"}))
        out[arm] = folder / f"{arm}.jsonl"
        out[arm].write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture
def imported(cli, make_study, tmp_path):
    """The study checked and its three systems imported through the installed `fairtrial`."""
    study = make_study(STUDY.format(extra=""))
    files = write_systems(tmp_path)
    p = cli("check", study, check=0)
    assert "evaluation only" in p.stdout and "valid" in p.stdout
    notes = {}
    for arm in "abc":
        p = cli("import", study, files[arm], "--arm", arm, check=0)
        assert f"as arm {arm}" in p.stdout
        notes[arm] = p.stdout
    return study, notes


def report_json(cli, study) -> dict:
    p = cli("report", study, "--json", "--resamples", RESAMPLES, "--seed", SEED, check=0)
    return json.loads(p.stdout)


def test_run_says_there_is_nothing_to_run(cli, make_study):
    study = make_study(STUDY.format(extra=""))
    p = cli("run", study, check=0)
    assert "nothing to run" in p.stdout and "fairtrial import" in p.stdout
    assert json.loads(cli("run", study, "--json", check=0).stdout)["evaluation_only"] is True


def test_import_notes_only_when_true(imported):
    _, notes = imported
    assert "note" not in notes["a"]            # nothing to compare with yet
    assert "note" not in notes["b"]            # the same items as a
    assert f"c lacks {LACKING} of the {N} items" in notes["c"]
    assert "q0000" in notes["c"]               # a few of the missing ids are named


def test_verdicts_equal_a_hand_computation_on_the_shared_items(cli, imported):
    study, _ = imported
    rep = report_json(cli, study)
    y = outcomes()
    comps = {c["arm"]: c for c in rep["comparisons"]}
    assert set(comps) == {"b", "c"} and all(c["reference"] == "a" for c in comps.values())
    # per pair, not the intersection of all arms: b vs a keeps every item
    assert comps["b"]["n_items"] == N and comps["b"]["dropped_items"] == 0
    assert comps["c"]["n_items"] == N - LACKING and comps["c"]["dropped_items"] == LACKING
    for arm, c in comps.items():
        assert c["n_seeds"] == 1                        # one replicate, never 'copies as seeds'
        shared = items_of(arm)
        x = np.stack([y["a"][shared], y[arm][shared]])[:, None, :]    # (reference, arm) x 1 x N
        d = two_level(x, n_resamples=RESAMPLES, seed=SEED)
        diff = d.means[:, 1] - d.means[:, 0]
        assert c["diff"] == pytest.approx(y[arm][shared].mean() - y["a"][shared].mean(), abs=1e-12)
        assert c["diff_ci"] == pytest.approx(list(percentile_interval(diff, c["level"])), abs=1e-12)
        # McNemar (exact) as a sanity check of direction and significance
        only_arm = int(((y[arm][shared] == 1) & (y["a"][shared] == 0)).sum())
        only_ref = int(((y[arm][shared] == 0) & (y["a"][shared] == 1)).sum())
        p = binomtest(only_arm, only_arm + only_ref, 0.5).pvalue
        assert np.sign(only_arm - only_ref) == np.sign(c["diff"])
        assert c["paired_outcomes"]["arm_only"] == only_arm
        assert c["paired_outcomes"]["reference_only"] == only_ref
        assert c["paired_outcomes"]["p_mcnemar"] == pytest.approx(p)
        assert (p < 1 - c["level"]) == (c["verdict"] == "supported")
    assert comps["b"]["verdict"] == "supported" and comps["c"]["verdict"] == "inconclusive"
    assert rep["verdict"] == "mixed"
    codes = {f["code"]: f for f in rep["findings"]}
    assert "eval_digest_mismatch" not in codes         # lacking items is coverage, not a mismatch
    assert "arm_without_scores" not in codes
    miss = codes["missing_items"]
    assert miss["details"]["lacking"] == {"c": {"n": LACKING, "ids": [f"q{i:04d}" for i in range(5)],
                                                "seeds": None}}
    # the secondary metric (declared geomean, lower is better) is compared too
    sec = {c["arm"]: c for c in rep["secondary"]}
    assert sec["b"]["metric"] == "latency_ms" and sec["b"]["diff"] < 0


def test_missing_items_counted_as_failures(cli, imported):
    study, _ = imported
    rep = report_json(cli, study)
    y = outcomes()
    c = next(c for c in rep["comparisons"] if c["arm"] == "c")
    assert c["missing"] == {"reference": 0, "arm": LACKING, "eval_set_items": N}
    f = c["as_failures"]
    filled = y["c"].copy()
    filled[:LACKING] = 0.0                               # a missing answer counts as wrong
    assert f["n_items"] == N
    assert f["mean_arm"] == pytest.approx(filled.mean(), abs=1e-12)
    assert f["mean_reference"] == pytest.approx(y["a"].mean(), abs=1e-12)
    x = np.stack([y["a"], filled])[:, None, :]
    d = two_level(x, n_resamples=RESAMPLES, seed=SEED)
    assert f["interval"] == pytest.approx(
        list(percentile_interval(d.means[:, 1] - d.means[:, 0], c["level"])), abs=1e-12)
    # here the gap decides: counting c's unanswered items as wrong makes it clearly worse than a
    assert f["estimate"] < 0 and f["verdict"] == "refuted"
    b = next(c for c in rep["comparisons"] if c["arm"] == "b")
    assert b["missing"] is None and b["as_failures"] is None
    md = (Path(cli.tmp) / "ws" / "studies" / "study" / "report.md").read_text()
    assert "### Missing items" in md and "missing as failures" in md
    assert "exact McNemar p" in md


def test_one_replicate_is_said_and_seeds_are_not_copies(cli, make_study, tmp_path):
    study = make_study(STUDY.format(extra="replicates = [0, 1, 2]"))
    files = write_systems(tmp_path)
    assert "count as one replicate" in cli("check", study, check=0).stdout
    for arm in "abc":
        p = cli("import", study, files[arm], "--arm", arm, check=0)
        assert "one fixed system" in p.stdout
    rep = report_json(cli, study)
    assert {c["n_seeds"] for c in rep["comparisons"]} == {1}
    assert {s["n_seeds"] for s in rep["summaries"]} == {1}
    one = next(f for f in rep["findings"] if f["code"] == "one_replicate")
    assert "item sampling only" in one["message"] and "seed-to-seed variation" in one["message"]
    assert "declares 3 seeds" in one["message"]
    md = (tmp_path / "ws" / "studies" / "study" / "report.md").read_text()
    assert "1 x 400" in md and "3 x 400" not in md and "interval covers item sampling only" in md


def test_values_as_they_come(cli, make_study, tmp_path):
    study = make_study(STUDY.format(extra=""))
    f = tmp_path / "bad.jsonl"
    ok = '{"item_id": "q1", "value": true, "metric": "accuracy"}\n'
    cases = {
        '{"item_id": "q2", "value": "1", "metric": "accuracy"}':
            "bad.jsonl:2: value is a number written as a string ('1')",
        '{"item_id": "q2", "value": NaN, "metric": "accuracy"}':
            "bad.jsonl:2: value must be a finite number, got nan",
        '{"item_id": "q2", "value": Infinity, "metric": "latency_ms"}':
            "bad.jsonl:2: value must be a finite number, got inf",
        '{"item_id": "q2", "value": 0.5, "metric": "accuracy"}':
            "bad.jsonl:2: accuracy is a proportion (0/1 per item",
        '{"item_id": "q2", "value": 1, "metric": "pass@1"}':
            'bad.jsonl:2: unknown metric "pass@1"',
        '{"item_id": "q2", "metric": "accuracy"}': "bad.jsonl:2: value is missing",
    }
    for line, message in cases.items():
        f.write_text(ok + line + "\n")
        p = cli("import", study, f, "--arm", "a", check=2)
        assert message in p.stderr, (line, p.stderr)
        assert "Traceback" not in p.stderr
    f.write_text(ok + '{"item_id": "q2", "value": false, "metric": "accuracy"}\n')
    assert "imported 2 item scores" in cli("import", study, f, "--arm", "a", check=0).stdout


def test_study_file_errors(cli, make_study):
    p = cli("check", make_study(STUDY.format(extra="").replace(
        'secondary = ["latency_ms"]', 'secondary = ["pass@1"]')), check=2)
    assert 'endpoint.secondary[0]: unknown metric "pass@1"' in p.stderr
    assert "declares its metrics" in p.stderr and "study.toml:11: endpoint.secondary[0]" in p.stderr
    assert '[metrics."pass@1"] direction = "higher"' in p.stderr
    p = cli("check", make_study(STUDY.format(extra='[[arms]]\nname = "d"\n'), name="s2.toml"),
            check=2)
    assert "trains nothing" in p.stderr
    p = cli("check", make_study(STUDY.format(extra="").replace(
        'external_arms = ["a", "b", "c"]\ncontrol = "a"', ""), name="s3.toml"), check=2)
    assert "no arms" in p.stderr
    p = cli("check", make_study(STUDY.format(extra="").replace(
        "aggregation = \"proportion\"", "aggregation = \"median\""), name="s4.toml"), check=2)
    assert "metrics.accuracy.aggregation" in p.stderr


def test_a_recipe_study_with_external_arms_only_and_its_own_metric(cli, make_study, tmp_path):
    """A recipe's metrics stay usable for external arms; [metrics] adds one the recipe lacks;
    redeclaring a recipe metric differently is an error."""
    text = textwrap.dedent("""\
        question = "q?"
        recipe = "_test"
        external_arms = ["x", "y"]
        control = "x"
        [metrics]
        latency_ms = { direction = "lower", aggregation = "geomean" }
        [endpoint]
        metric = "score"
        secondary = ["latency_ms"]
        """)
    study = make_study(text)
    assert "valid" in cli("check", study, check=0).stdout
    rng = np.random.default_rng(1)
    for arm, shift in (("x", 0.0), ("y", 0.5)):
        rows = [json.dumps({"item_id": f"i{i}", "metric": "score", "value": float(v) + shift})
                for i, v in enumerate(rng.normal(size=80))]
        (tmp_path / f"{arm}.jsonl").write_text("\n".join(rows) + "\n")
        cli("import", study, tmp_path / f"{arm}.jsonl", "--arm", arm, check=0)
    rep = report_json(cli, study)
    assert rep["comparisons"][0]["arm"] == "y" and rep["comparisons"][0]["verdict"] == "supported"
    bad = make_study(text.replace("[metrics]", '[metrics.score]\ndirection = "lower"\n[metrics.x]'
                                  ).replace('latency_ms = { direction = "lower", aggregation = "geomean" }',
                                            'direction = "lower"'), name="bad.toml")
    p = cli("check", bad, check=2)
    assert "recipe _test declares score as direction \"higher\"" in p.stderr


@pytest.mark.skipif(not GSM8K.exists(), reason="../shared/data/gsm8k is not beside the project")
def test_worked_example_on_gsm8k(cli, tmp_path):
    """docs/tutorial-evaluation.md, as a user runs it (on the first 400 questions)."""
    out = tmp_path / "systems"
    subprocess.run([sys.executable, str(REPO / "examples" / "make_gsm8k_systems.py"), "--data",
                    str(GSM8K), "--limit", "400", "--out", str(out)], check=True, cwd=tmp_path,
                   capture_output=True)
    study = REPO / "examples" / "gsm8k_rules.toml"
    cli("check", study, check=0)
    for arm in ("last-number", "largest-number", "last-calculation"):
        cli("import", study, out / f"{arm}.jsonl", "--arm", arm, check=0)
    rep = report_json(cli, study)
    comps = {c["arm"]: c for c in rep["comparisons"]}
    assert comps["last-calculation"]["verdict"] == "supported"
    assert comps["largest-number"]["verdict"] in ("refuted", "inconclusive")
    assert comps["last-calculation"]["as_failures"]["verdict"] == "supported"
    assert not [f for f in rep["findings"] if f["severity"] == "error"]
    # the rows carry the question's digest: every system answered the same question per id
    rows = [json.loads(line) for line in (out / "last-number.jsonl").read_text().splitlines()]
    assert all(isinstance(r["value"], bool) and len(r["item_digest"]) == 16 for r in rows)


def test_same_item_ids_with_different_content_is_a_mismatch_lacking_items_is_not():
    from fairtrial.analysis import Decision, Endpoint, StudyDesign, analyze

    y = outcomes()
    rows = []
    for arm in "abc":
        for i in items_of(arm):
            rows.append({"item_id": f"q{i}", "eval_set": "bench", "eval_set_digest": "undeclared",
                         "metric": "accuracy", "value": y[arm][i], "system": "model", "arm": arm,
                         "replicate": 0, "item_digest": f"h{i}"})
    df = pd.DataFrame(rows)
    design = StudyDesign(question="q?", arms={"a": {}, "b": {}, "c": {}}, control="a",
                         endpoint=Endpoint("accuracy", "higher"), fixed_arms=("a", "b", "c"),
                         decision=Decision(min_effect=0.0, effect="absolute"),
                         metric_aggregations={"accuracy": "proportion"})
    r = analyze(df, design, n_resamples=300)
    assert "eval_digest_mismatch" not in {f.code for f in r.findings}
    assert "missing_items" in {f.code for f in r.findings}
    changed = df.copy()
    changed.loc[(changed["arm"] == "b") & (changed["item_id"] == "q70"), "item_digest"] = "other"
    r = analyze(changed, design, n_resamples=300)
    f = next(f for f in r.findings if f.code == "eval_digest_mismatch")
    assert f.severity == "error" and f.details["items"] == ["q70"]
    assert all(c.verdict == "inconclusive" and c.blocked_by for c in r.comparisons)
    # a declared eval-set digest that differs is a mismatch too; an undeclared one claims nothing
    declared = df.copy()
    declared.loc[declared["arm"] == "a", "eval_set_digest"] = "d1"
    assert "eval_digest_mismatch" not in {f.code for f in analyze(declared, design, n_resamples=300).findings}
    declared.loc[declared["arm"] == "b", "eval_set_digest"] = "d2"
    assert "eval_digest_mismatch" in {f.code for f in analyze(declared, design, n_resamples=300).findings}
    # a proportion holds 0/1 values only
    bad = df.copy()
    bad.loc[0, "value"] = 0.5
    with pytest.raises(ValueError, match="declared a proportion"):
        analyze(bad, design, n_resamples=300)


def test_a_fixed_arm_stays_paired_with_a_trained_arm_seed_by_seed():
    """An external arm's rows repeat under every seed of a trained study: a comparison with a
    trained arm keeps the trained arm's seeds, while its own summary counts one replicate."""
    from fairtrial.analysis import Decision, Endpoint, StudyDesign, analyze
    from fairtrial.analysis.synthetic import make_scores

    df = make_scores({"trained": 0.3}, n_items=80)
    ext = df[df["replicate"] == 0].copy()
    ext["arm"], ext["value"] = "api", ext["value"] - 0.3
    df = pd.concat([df] + [ext.assign(replicate=r) for r in (0, 1, 2)], ignore_index=True)
    design = StudyDesign(question="q?", arms={"api": {}, "trained": {}}, control="api",
                         replicates=(0, 1, 2), endpoint=Endpoint("score", "higher"),
                         fixed_arms=("api",), decision=Decision(min_effect=0.0, effect="absolute"))
    r = analyze(df, design, n_resamples=500)
    assert r.comparisons[0].n_seeds == 3
    assert {s.arm: s.n_seeds for s in r.summaries} == {"api": 1, "trained": 3}
    one = next(f for f in r.findings if f.code == "one_replicate")
    assert one.details["external"] == ["api"] and "plus the seeds of the trained arms" in one.message
    assert "unequal_seeds" not in {f.code for f in r.findings}


def test_a_one_seed_study_says_its_intervals_cover_items_only():
    from fairtrial.analysis import Decision, Endpoint, StudyDesign, analyze
    from fairtrial.analysis.synthetic import make_scores

    design = StudyDesign(question="q?", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                         replicates=(0,), endpoint=Endpoint("score", "higher"),
                         decision=Decision(min_effect=0.0, effect="absolute"))
    r = analyze(make_scores({"ctrl": 0.0, "arm": 0.3}, seeds=(0,), n_items=80), design,
                n_resamples=500)
    one = next(f for f in r.findings if f.code == "one_replicate")
    assert one.details == {"external": [], "one_seed": ["ctrl", "arm"]}
    assert "item sampling only" in one.message and "declares" not in one.message
    three = analyze(make_scores({"ctrl": 0.0, "arm": 0.3}, n_items=80),
                    StudyDesign(question="q?", arms={"ctrl": {}, "arm": {}}, control="ctrl",
                                replicates=(0, 1, 2), endpoint=Endpoint("score", "higher")),
                    n_resamples=500)
    assert "one_replicate" not in {f.code for f in three.findings}


def test_example_study_checks_without_data(cli):
    p = cli("check", REPO / "examples" / "gsm8k_rules.toml", "--json", check=0)
    out = json.loads(p.stdout)
    assert out["evaluation_only"] and out["recipe"] == "scores" and out["replicates"] == [0]
    assert out["external_arms"] == ["last-number", "largest-number", "last-calculation"]
    assert out["metrics"] == [{"name": "accuracy", "direction": "higher", "aggregation": "proportion",
                              "missing": None}]


F1_STUDY = """\
question = "Does system c extract more fields than system a?"
external_arms = ["a", "c"]
control = "a"

[metrics]
f1 = {{ direction = "higher", aggregation = "mean"{missing} }}

[endpoint]
metric = "f1"

[decision]
effect = "absolute"
"""


@pytest.mark.parametrize("declared", [True, False])
def test_missing_as_failures_for_a_fractional_score_needs_a_declared_failure_value(
        cli, make_study, tmp_path, declared):
    """An F1 in [0, 1] is not 0/1: the missing-as-failures view uses the metric's declared
    `missing` value (0.0: no answer, no credit), and is absent when none is declared."""
    study = make_study(F1_STUDY.format(missing=", missing = 0.0" if declared else ""))
    rng = np.random.default_rng(5)
    f1 = {"a": rng.uniform(0.3, 0.7, N), "c": rng.uniform(0.4, 0.8, N)}
    for arm in "ac":
        rows = [json.dumps({"item_id": f"q{i:04d}", "metric": "f1", "value": float(f1[arm][i]),
                            "eval_set": "bench"}) for i in items_of(arm)]
        (tmp_path / f"{arm}.jsonl").write_text("\n".join(rows) + "\n")
        cli("import", study, tmp_path / f"{arm}.jsonl", "--arm", arm, check=0)
    c = report_json(cli, study)["comparisons"][0]
    assert c["missing"] == {"reference": 0, "arm": LACKING, "eval_set_items": N}
    if not declared:
        assert c["as_failures"] is None
        return
    filled = f1["c"].copy()
    filled[:LACKING] = 0.0
    f = c["as_failures"]
    assert f["failure_value"] == 0.0 and f["n_items"] == N
    assert f["mean_arm"] == pytest.approx(filled.mean(), abs=1e-12)
    assert f["mean_reference"] == pytest.approx(f1["a"].mean(), abs=1e-12)
    # c is better on the items it answered, and worse once its 60 gaps count as 0
    assert c["diff"] > 0 and f["estimate"] < c["diff"]
