"""`fairtrial import`: an external arm's scores join the study and can be its control."""

from __future__ import annotations

import json

from tests.conftest import study_text


def test_import_external_control_and_report(cli, make_study, tmp_path):
    text = study_text().replace('control = "base"', 'control = "api"\nexternal_arms = ["api"]')
    study = make_study(text)
    cli("run", study, check=0)
    # the external system scores 0.3 below the base arm's item difficulty on the same items
    import numpy as np

    base = 1.0 + np.random.default_rng(12345).normal(scale=0.5, size=50)
    lines = [json.dumps({"item_id": f"item{i:05d}", "value": float(b) - 0.3}) for i, b in enumerate(base)]
    f = tmp_path / "api.jsonl"
    f.write_text("\n".join(lines) + "\n")
    p = cli("import", study, f, "--arm", "api", "--metric", "score", "--eval-set", "test", check=0)
    assert "imported 50 item scores as arm api" in p.stdout
    assert "not the study's items" not in p.stdout
    rep = json.loads(cli("report", study, "--json", "--resamples", "2000", check=0).stdout)
    text = json.dumps(rep)
    assert "api" in text and "better" in text
    # importing again is idempotent: one record, the same cells
    cli("import", study, f, "--arm", "api", "--metric", "score", "--eval-set", "test", check=0)


def test_import_bad_input(cli, make_study, tmp_path):
    text = study_text().replace('control = "base"', 'control = "api"\nexternal_arms = ["api"]')
    study = make_study(text)
    f = tmp_path / "bad.jsonl"
    f.write_text('{"item_id": "a", "value": "NaN?"}\n')
    p = cli("import", study, f, "--arm", "api", "--metric", "score", check=2)
    assert "bad.jsonl:1: value must be a finite number" in p.stderr
    f.write_text('{"item_id": "a", "value": 1}\n{"item_id": "a", "value": 2}\n')
    p = cli("import", study, f, "--arm", "api", "--metric", "score", check=2)
    assert "bad.jsonl:2: item a is scored twice" in p.stderr
    p = cli("import", study, f, "--arm", "nope", "--metric", "score", check=2)
    assert '"nope" is not an external arm' in p.stderr
    f.write_text('{"item_id": "a", "value": 1}\n')
    p = cli("import", study, f, "--arm", "api", "--metric", "acc", check=2)
    assert 'unknown metric "acc"' in p.stderr


def test_write_item_scores_keeps_columns_missing_from_the_first_row(tmp_path):
    from fairtrial.scores import read_item_scores, write_item_scores

    rows = [{"item_id": "a", "eval_set": "t", "eval_set_digest": "d", "metric": "m", "value": 1.0},
            {"item_id": "a", "eval_set": "t", "eval_set_digest": "d", "metric": "m", "value": 0.5,
             "system": "unigram", "n_tokens": 3}]
    t = read_item_scores(write_item_scores(tmp_path, rows)).to_pylist()
    assert [r["system"] for r in t] == ["model", "unigram"]
    assert [r["n_tokens"] for r in t] == [None, 3]
