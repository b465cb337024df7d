"""The ilm integrity hook on a small real study (CEFR-SP sample through prepare, tokenizer and
testset): quiet on the fair split, the overlap check fires on a leaky copy, the reproducibility
check fires on a tampered copy."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairtrial.analysis import AnalysisContext, Decision, Endpoint, StudyDesign, analyze
from fairtrial.recipes.ilm import RECIPE
from fairtrial.recipes.ilm.examples import ExampleShards
from fairtrial.recipes.ilm.integrity import document_of
from fairtrial.recipes.ilm.params import IlmParams
from fairtrial.recipes.testing import StageRunner
from fairtrial.scores import eval_set_digest

DATA = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data").resolve()
ARMS = {"general": "all", "b1": "B1"}


def _params(data: Path, train_level) -> dict:
    return IlmParams.model_validate({
        "data": {"source": str(data), "format": "cefr-sp", "level_rule": "max"},
        "tokenizer": {"vocab_size": 600}, "masking": {"workers": 1},
        "testset": {"n_masks": 2, "workers": 1}, "train_level": train_level,
    }).model_dump(mode="json")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """prepare -> tokenizer -> testset on 400 real CEFR-SP sentences (shared by both arms)."""
    root = tmp_path_factory.mktemp("ilm_integrity")
    lines = (DATA / "cefr-sp" / "wikiauto_train.tsv").read_text().splitlines()
    pick = sorted(np.random.default_rng(0).choice(len(lines), 400, replace=False))
    data = root / "cefr.tsv"
    data.write_text("\n".join(lines[i] for i in pick) + "\n")
    params = {arm: _params(data, lv) for arm, lv in ARMS.items()}
    run = StageRunner(RECIPE, root, params["general"])
    run.upto("testset")  # prepare, tokenizer, testset
    return dict(run.dirs), params


def _copy_prepare(study, tmp_path) -> dict:
    paths, _ = study
    prep = tmp_path / "prepare"
    shutil.copytree(paths["prepare"], prep)
    return {**paths, "prepare": prep}


def _context(paths, params) -> AnalysisContext:
    """What collect makes of the hook's answers, arm by arm (the analysis' one merge)."""
    from fairtrial.analysis.design import merge_integrity

    return AnalysisContext(**merge_integrity({arm: RECIPE.integrity(paths, p) for arm, p in params.items()}))


def _scores(eval_texts) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for es, items in eval_texts.items():
        ids = sorted(items)
        for arm in ARMS:
            for rep in (0, 1):
                frames.append(pd.DataFrame({
                    "item_id": ids, "eval_set": es, "eval_set_digest": eval_set_digest(ids),
                    "metric": "score", "value": rng.normal(0, 1, len(ids)), "system": "model",
                    "arm": arm, "replicate": rep}))
    return pd.concat(frames, ignore_index=True)


def _analyze(paths, params):
    ctx = _context(paths, params)
    design = StudyDesign(question="q?", arms=params, control="general", replicates=(0, 1),
                         endpoint=Endpoint("score", "higher"), decision=Decision(), min_items=1)
    return ctx, analyze(_scores(ctx.eval_texts), design, ctx, n_resamples=200)


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def test_fair_split_gives_texts_and_no_finding(study):
    paths, params = study
    got = RECIPE.integrity(paths, params["b1"])
    train = _rows(paths["prepare"] / "train.jsonl")
    assert got["train_texts"] == [r["text"] for r in train if r["level"] == "B1"]
    assert len(got["train_texts"]) < len(RECIPE.integrity(paths, params["general"])["train_texts"])
    # one eval set per level; its items are the test documents the examples ("<id>/k": up to two
    # masks each) were made from, as the evaluate stage scores them
    levels = json.loads((paths["prepare"] / "summary.json").read_text())["levels"]
    assert sorted(got["eval_texts"]) == levels
    for lv in levels:
        test = {r["id"]: r["text"] for r in _rows(paths["prepare"] / lv / "test.jsonl")}
        items = got["eval_texts"][lv]
        examples = ExampleShards(paths["testset"] / lv).item_ids()
        assert sorted(items) == sorted({i.rsplit("/", 1)[0] for i in examples})
        assert all(items[i] == test[i] for i in items)
    assert [(s["name"], s["reproducible"]) for s in got["splits"]] == \
        [("prepare split", True), ("testset items", True)]
    assert "re-derived" in got["splits"][0]["details"]

    ctx, result = _analyze(paths, params)
    assert len(ctx.splits) == 2          # shared by both arms: listed once
    found = {f.code for f in result.findings}
    assert "train_eval_overlap" not in found and "split_not_reproducible" not in found


def test_leaky_split_fires_overlap(study, tmp_path):
    paths = _copy_prepare(study, tmp_path)
    prep = paths["prepare"]
    test_row = next(r for r in _rows(prep / "test.jsonl") if r["level"] == "B1")
    for f in (prep / "train.jsonl", prep / "B1" / "train.jsonl"):   # copy, keep it in test
        _write(f, _rows(f) + [test_row])
    _, result = _analyze(paths, study[1])
    hits = [f for f in result.findings if f.code == "train_eval_overlap"]
    assert {(f.severity, f.details["train"], f.details["eval_set"]) for f in hits} == \
        {("error", "general", "B1"), ("error", "b1", "B1")}
    assert any(i.rsplit("/", 1)[0] == test_row["id"]    # masked more than once, one item
               for i in ExampleShards(paths["testset"] / "B1").item_ids())
    assert all(f.details["n"] == 1 for f in hits)
    assert {i for f in hits for i in f.details["items"]} == {test_row["id"]}
    # the extra training row is also not what the seed gives
    bad = [f for f in result.findings if f.code == "split_not_reproducible"]
    assert bad and test_row["id"] in bad[0].message


def test_tampered_split_fires_reproducibility(study, tmp_path):
    paths = _copy_prepare(study, tmp_path)
    prep = paths["prepare"]
    # swap one training and one validation document of the same level: no overlap with the
    # test items, the counts still match, only the seed no longer gives this split
    train, valid = _rows(prep / "train.jsonl"), _rows(prep / "valid.jsonl")
    v = valid[0]
    t = next(r for r in train if r["level"] == v["level"])
    train = sorted([r for r in train if r is not t] + [v], key=lambda r: r["id"])
    valid = sorted([r for r in valid if r is not v] + [t], key=lambda r: r["id"])
    _write(prep / "train.jsonl", train)
    _write(prep / "valid.jsonl", valid)
    for part, rows in (("train", train), ("valid", valid)):
        _write(prep / v["level"] / f"{part}.jsonl", [r for r in rows if r["level"] == v["level"]])
    got = RECIPE.integrity(paths, study[1]["general"])
    assert got["splits"][0]["reproducible"] is False
    _, result = _analyze(paths, study[1])
    bad = [f for f in result.findings if f.code == "split_not_reproducible"]
    assert len(bad) == 1 and bad[0].severity == "error"
    assert t["id"] in bad[0].message and v["id"] in bad[0].message
    assert "train_eval_overlap" not in {f.code for f in result.findings}


def test_inconsistent_level_file_and_missing_source(study, tmp_path):
    paths = _copy_prepare(study, tmp_path)
    prep = paths["prepare"]
    # a leak written only into a level file: the "all" files disagree with it
    lv = json.loads((prep / "summary.json").read_text())["levels"][0]
    rows = _rows(prep / lv / "train.jsonl")
    _write(prep / lv / "train.jsonl", rows[1:])
    params = dict(study[1]["general"], data={**study[1]["general"]["data"],
                                             "source": str(tmp_path / "gone.tsv")})
    sp = RECIPE.integrity(paths, params)["splits"][0]
    assert sp["reproducible"] is False
    assert f"{lv}/train.jsonl" in sp["details"] and "summary.json" in sp["details"]
    # untouched artifact, source gone: consistency checked, and the details say re-derivation was not
    sp = RECIPE.integrity(study[0], params)["splits"][0]
    assert sp["reproducible"] is True and "not re-derived" in sp["details"]


def test_document_of():
    docs = {"a": "", "b/2": "", "c#1": ""}
    assert document_of("a", docs) == "a"
    assert document_of("a/3", docs) == "a"
    assert document_of("a#0/3", docs) == "a"
    assert document_of("a#2", docs) == "a"
    assert document_of("b/2", docs) == "b/2"
    assert document_of("b/2/0", docs) == "b/2"
    assert document_of("c#1", docs) == "c#1"
    assert document_of("c#1#0/1", docs) == "c#1"
    assert document_of("z/1", docs) is None
