"""The lvm integrity hook on a small synthetic study (a OneStop-shaped corpus through prepare and
windows for two train_fraction arms): quiet on the fair split, the overlap check fires on a leaky
copy, the reproducibility check fires on a tampered copy, and a duplicated document in the data
is found as overlap although the split itself is reproducible."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fairtrial.analysis import AnalysisContext, Decision, Endpoint, StudyDesign, analyze
from fairtrial.recipes.lvm import RECIPE
from fairtrial.recipes.lvm.params import LvmParams
from fairtrial.scores import eval_set_digest
from fairtrial.recipes.testing import FakeContext, stage_params
from lvm_helpers import write_corpus

FRACTIONS = {"half": 0.5, "full": 1.0}
BASE = {"window": {"k": 3}, "split": {"seed": 1, "valid": 0.2, "test": 0.3}}


def _params(source: Path, fraction: float, **over) -> dict:
    return LvmParams.model_validate({**BASE, "data": str(source), "train_fraction": fraction,
                                     **over}).model_dump(mode="json")


def _build(root: Path, source: Path, **over):
    """One shared prepare artifact, one windows artifact per arm: (arm -> paths, arm -> params)."""
    params = {arm: _params(source, f, **over) for arm, f in FRACTIONS.items()}
    prep = root / "prepare"
    RECIPE.stage("prepare").fn(FakeContext(stage_params(RECIPE, "prepare", params["full"]), prep))
    paths = {}
    for arm, p in params.items():
        win = root / f"windows-{arm}"
        RECIPE.stage("windows").fn(FakeContext(stage_params(RECIPE, "windows", p), win, {"prepare": prep}))
        paths[arm] = {"prepare": prep, "windows": win}
    return paths, params


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("lvm_integrity")
    return _build(root, write_corpus(root / "corpus", n_topics=12))


def _copy(study, tmp_path):
    paths, params = study
    root = Path(paths["full"]["prepare"]).parent
    shutil.copytree(root, tmp_path / "copy", ignore=shutil.ignore_patterns("corpus"))
    return {arm: {k: tmp_path / "copy" / v.name for k, v in ps.items()}
            for arm, ps in paths.items()}, params


def _context(paths, params) -> AnalysisContext:
    """What collect makes of the hook's answers, arm by arm (the analysis' one merge)."""
    from fairtrial.analysis.design import merge_integrity

    return AnalysisContext(**merge_integrity({arm: RECIPE.integrity(paths[arm], p) for arm, p in params.items()}))


def _analyze(paths, params):
    ctx = _context(paths, params)
    rng = np.random.default_rng(0)
    frames = []
    for es, items in ctx.eval_texts.items():
        ids = sorted(items)
        for arm in params:
            for rep in (0, 1):
                frames.append(pd.DataFrame({
                    "item_id": ids, "eval_set": es, "eval_set_digest": eval_set_digest(ids),
                    "metric": "mrr", "value": rng.uniform(0, 1, len(ids)), "system": "model",
                    "arm": arm, "replicate": rep}))
    design = StudyDesign(question="q?", arms=params, control=next(iter(params)), replicates=(0, 1),
                         endpoint=Endpoint("mrr", "higher"), decision=Decision(), min_items=1)
    return ctx, analyze(pd.concat(frames, ignore_index=True), design, ctx, n_resamples=200)


def _units(prep: Path) -> list[dict]:
    return pq.read_table(prep / "units.parquet").to_pylist()


def test_fair_split_gives_texts_and_no_finding(study):
    paths, params = study
    got = {arm: RECIPE.integrity(paths[arm], params[arm]) for arm in params}
    units = _units(paths["full"]["prepare"])
    # a window's text: its k = 3 context units and the target, one per line
    train_w = np.load(paths["half"]["windows"] / "train.npy")
    assert got["half"]["train_texts"][0] == "\n".join(units[r]["text"] for r in train_w[0])
    assert len(got["half"]["train_texts"]) == len(train_w)
    assert set(got["half"]["train_texts"]) < set(got["full"]["train_texts"])   # nested
    # eval items keyed like the item scores, the same for both arms
    test_ids = json.loads((paths["full"]["windows"] / "test_ids.json").read_text())
    assert list(got["full"]["eval_texts"]) == ["test"]
    items = got["full"]["eval_texts"]["test"]
    assert list(items) == test_ids and items == got["half"]["eval_texts"]["test"]
    doc, pos = test_ids[0].rsplit("#", 1)
    target = next(u for u in units if u["doc_id"] == doc and u["position"] == int(pos))
    assert items[test_ids[0]].split("\n")[-1] == target["text"]
    for arm in params:
        assert [s["reproducible"] for s in got[arm]["splits"]] == [True, True]
    assert got["half"]["splits"][1]["name"] == "windows (train_fraction 0.5)"

    ctx, result = _analyze(paths, params)
    assert len(ctx.splits) == 3      # the shared document split once, each arm's windows
    found = {f.code for f in result.findings}
    assert "train_eval_overlap" not in found and "split_not_reproducible" not in found


def test_leaky_split_fires_overlap(study, tmp_path):
    paths, params = _copy(study, tmp_path)
    # copy one test document's windows into the "full" arm's training windows
    win = paths["full"]["windows"]
    test_ids = json.loads((win / "test_ids.json").read_text())
    leaked = test_ids[0].rsplit("#", 1)[0]
    own = [i for i, t in enumerate(test_ids) if t.rsplit("#", 1)[0] == leaked]
    test_w, train_w = np.load(win / "test.npy"), np.load(win / "train.npy")
    np.save(win / "train.npy", np.concatenate([train_w, test_w[own]]))
    ctx, result = _analyze(paths, params)
    hits = [f for f in result.findings if f.code == "train_eval_overlap"]
    assert len(hits) == 1 and hits[0].severity == "error"
    assert hits[0].details["train"] == "full" and hits[0].details["n"] == len(own)
    assert {i.rsplit("#", 1)[0] for i in hits[0].details["items"]} == {leaked}
    # the extra training windows are also not what the seed gives
    bad = [f for f in result.findings if f.code == "split_not_reproducible"]
    assert [f.details["name"] for f in bad] == ["windows (train_fraction 1)"]


def test_tampered_split_fires_reproducibility(study, tmp_path):
    paths, params = _copy(study, tmp_path)
    prep = paths["full"]["prepare"]
    # move one topic (both its level versions) from test to valid: no training window changes
    docs = pq.read_table(prep / "documents.parquet").to_pylist()
    group = next(d["group"] for d in docs if d["split"] == "test")
    for d in docs:
        if d["group"] == group:
            d["split"] = "valid"
    pq.write_table(pa.Table.from_pylist(docs), prep / "documents.parquet")
    ctx, result = _analyze(paths, params)
    bad = {f.details["name"]: f for f in result.findings if f.code == "split_not_reproducible"}
    assert "document split" in bad and bad["document split"].severity == "error"
    assert "(test -> valid)" in bad["document split"].message
    assert "train_eval_overlap" not in {f.code for f in result.findings}


def test_duplicated_document_in_the_data_never_straddles_the_split(tmp_path):
    """A test document copied under another topic in the corpus: prepare keeps the copy in the
    original's split for every seed (fairtrial.data.split: duplicates join one group), the split
    stays reproducible, and no test window overlaps training. Before prepare version 2 some seeds
    put the copy in training and the overlap check fired."""
    src = write_corpus(tmp_path / "corpus", n_topics=12)
    ele = src / "Texts-SeparatedByReadingLevel" / "Ele-Txt"
    shutil.copy(ele / "Topic0-ele.txt", ele / "Copy0-ele.txt")
    tested = None
    for seed in range(12):
        root = tmp_path / f"s{seed}"
        paths, params = _build(root, src, split={**BASE["split"], "seed": seed})
        docs = {d["doc_id"]: d for d in
                pq.read_table(paths["full"]["prepare"] / "documents.parquet").to_pylist()}
        original, copy = docs["Ele/Topic0"], docs["Ele/Copy0"]
        assert copy["split"] == original["split"], seed
        assert copy["group"] == original["group"] == "Copy0"  # the smaller key anchors the group
        assert (copy["key"], original["key"]) == ("Copy0", "Topic0")
        if original["split"] == "test" and tested is None:
            tested = (paths, params)
    assert tested is not None, "no seed in 0..11 put the original in test"
    paths, params = tested
    _, result = _analyze({"full": paths["full"]}, {"full": params["full"]})
    codes = {f.code for f in result.findings}
    assert "train_eval_overlap" not in codes and "split_not_reproducible" not in codes

    # a copy moved into training by hand is a split that its seed does not give
    prep = paths["full"]["prepare"]
    rows = pq.read_table(prep / "documents.parquet").to_pylist()
    for d in rows:
        if d["doc_id"] == "Ele/Copy0":
            d["split"], d["group_rank"] = "train", 0
    pq.write_table(pa.Table.from_pylist(rows), prep / "documents.parquet")
    _, result = _analyze({"full": paths["full"]}, {"full": params["full"]})
    assert "split_not_reproducible" in {f.code for f in result.findings}
