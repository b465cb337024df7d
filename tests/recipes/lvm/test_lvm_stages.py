"""Stage functions run in a chain with a fake context: prepare -> embed -> windows -> train ->
evaluate, on a tiny OneStopEnglish-shaped corpus with pseudo-random embeddings."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fairtrial.recipes.api import StageError
from fairtrial.recipes.lvm import RECIPE
from fairtrial.recipes.lvm.params import LvmParams
from fairtrial.scores import read_item_scores
from fairtrial.recipes.testing import StageRunner
from lvm_helpers import write_corpus

TINY = {"embed": {"model": "random:16"}, "window": {"k": 3},
        "split": {"seed": 1, "valid": 0.2, "test": 0.3},
        "model": {"hidden": 16, "layers": 1, "heads": 2},
        "train": {"epochs": 2, "batch_size": 16}}


def chain(tmp_path, source, **over):
    params = {**TINY, "data": str(source), **over}
    return StageRunner(RECIPE, tmp_path / "run", params, seed=0)


def test_prepare_keeps_a_topics_levels_in_one_split(tmp_path, corpus):
    c = chain(tmp_path, corpus)
    summary = c.run("prepare")
    docs = pq.read_table(c.dirs["prepare"] / "documents.parquet").to_pylist()
    assert summary["group_by"] == "group" and summary["documents"] == 12
    by_topic = {}
    for d in docs:
        by_topic.setdefault(d["group"], set()).add(d["split"])
    assert len(by_topic) == 6 and all(len(s) == 1 for s in by_topic.values())
    # the same seed gives the same split; the order of files on disk does not matter
    again = chain(tmp_path / "again", corpus)
    again.run("prepare")
    assert pq.read_table(again.dirs["prepare"] / "documents.parquet").to_pylist() == docs


def test_no_test_sentence_in_training_windows_and_nested_sizes(tmp_path):
    src = write_corpus(tmp_path / "c", n_topics=12)
    runs = {}
    for frac in (1 / 3, 1.0):
        c = chain(tmp_path / str(frac), src, train_fraction=frac)
        c.run("prepare")
        counts = c.run("windows")
        units = pq.read_table(c.dirs["prepare"] / "units.parquet").to_pylist()
        docs = {d["doc_id"]: d for d in
                pq.read_table(c.dirs["prepare"] / "documents.parquet").to_pylist()}
        train_w = np.load(c.dirs["windows"] / "train.npy")
        train_docs = {units[r]["doc_id"] for r in train_w.ravel()}
        test_docs = {d for d, x in docs.items() if x["split"] == "test"}
        test_texts = {u["text"] for u in units if u["doc_id"] in test_docs}
        assert train_docs and test_docs and not train_docs & test_docs
        assert not {units[r]["text"] for r in train_w.ravel()} & test_texts
        assert counts["test_units_seen_in_train"] == 0
        # every window lies in one document, in order
        for row in train_w:
            assert len({units[r]["doc_id"] for r in row}) == 1
            assert [units[r]["position"] for r in row] == list(
                range(units[row[0]]["position"], units[row[0]]["position"] + 4))
        runs[frac] = (set(json.loads((c.dirs["windows"] / "train_ids.json").read_text())),
                      json.loads((c.dirs["windows"] / "test_ids.json").read_text()), counts)
    small, large = runs[1 / 3], runs[1.0]
    assert small[0] < large[0]  # nested, strictly smaller
    assert small[1] == large[1]  # the test set does not depend on the training size
    assert small[2]["train_groups"] == 2 and large[2]["train_groups"] == 6  # 12 - 4 test - 2 valid


def test_short_documents_are_skipped_and_counted(tmp_path):
    src = write_corpus(tmp_path / "c", n_topics=20, short_topics=4)
    c = chain(tmp_path, src)
    c.run("prepare")
    counts = c.run("windows")
    skipped = sum(counts[f"{s}_skipped_short_documents"] for s in ("train", "valid", "test"))
    assert skipped == 8  # 4 short topics x 2 levels, 3 sentences < k + 1 = 4


def test_empty_split_is_a_clear_error(tmp_path):
    src = write_corpus(tmp_path / "c", n_topics=6, n_sent=3)  # every document too short
    c = chain(tmp_path, src)
    c.run("prepare")
    with pytest.raises(StageError, match=r"the train split has no windows .*shorter than k\+1 = 4 "
                                         r"units\). Lower window.k, raise train_fraction"):
        c.run("windows")


def test_csv_and_jsonl_documents(tmp_path):
    rows = [{"id": f"d{i}", "text": " ".join(f"Doc {i} sentence {j} here." for j in range(6)),
             "source": "s"} for i in range(8)]
    jl = tmp_path / "docs.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    csv = tmp_path / "docs.csv"
    csv.write_text("id,text\n" + "\n".join(f'{r["id"]},"{r["text"]}"' for r in rows))
    for src in (jl, csv):
        c = chain(tmp_path / src.suffix[1:], src)
        s = c.run("prepare")
        assert s["documents"] == 8 and s["units"] == 48 and s["group_by"] == "document"
        docs = pq.read_table(c.dirs["prepare"] / "documents.parquet").to_pylist()
        assert [d["doc_id"] for d in docs] == [f"d{i}" for i in range(8)]
    # no id column: fairtrial.data.readers' rule, "<file stem>:<data row>"
    noid = tmp_path / "noid.csv"
    noid.write_text("text\n" + "\n".join(f'"{r["text"]}"' for r in rows))
    docs = chain(tmp_path / "noid", noid)
    docs.run("prepare")
    ids = pq.read_table(docs.dirs["prepare"] / "documents.parquet")["doc_id"].to_pylist()
    assert ids == [f"noid:{i}" for i in range(1, 9)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(StageError, match=r"bad.jsonl: missing column\(s\) 'text'; "
                                         r"found: 'body'.*data.text_field"):
        chain(tmp_path / "bad", bad).run("prepare")
    with pytest.raises(StageError, match="is neither an existing file or folder nor a known data set"):
        chain(tmp_path / "missing", tmp_path / "nope").run("prepare")


def test_full_chain_writes_paired_item_scores_for_model_and_baselines(tmp_path, corpus):
    c = chain(tmp_path, corpus, arch="amn")
    for name in ("prepare", "embed", "windows", "train", "baseline"):
        c.run(name)
    summary = c.run("evaluate")
    t = read_item_scores(c.dirs["evaluate"] / "item_scores.parquet").to_pandas()
    assert set(t.system) == {"model", "copy_last", "mean_context", "ridge"}
    assert set(t.metric) == {m.name for m in RECIPE.metrics}
    assert t.eval_set.unique().tolist() == ["test"]
    assert t.eval_set_digest.nunique() == 1
    ids = json.loads((c.dirs["windows"] / "test_ids.json").read_text())
    for (system, metric), g in t.groupby(["system", "metric"]):
        assert g.item_id.tolist() == ids  # every system scored on the same windows
    mrr = t[t.metric == "mrr"]
    assert ((mrr.value > 0) & (mrr.value <= 1)).all()
    # random embeddings: nothing predicts the next vector; every system ranks near chance
    assert summary["copy_last.cosine"] == pytest.approx(
        t[(t.system == "copy_last") & (t.metric == "cosine")].value.mean(), abs=1e-5)
    assert summary["latency_ms_batch1"] > 0 and summary["latency_ms_batch256"] > 0
    # the baselines' per-window cosines are the exact ones, from the embeddings by hand
    vecs = np.load(c.dirs["embed"] / "embeddings.npy").astype(np.float64)
    w = np.load(c.dirs["windows"] / "test.npy")
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    mean = vecs[w[:, :-1]].mean(axis=1)
    want = {"copy_last": (unit[w[:, -2]] * unit[w[:, -1]]).sum(1),
            "mean_context": (mean * unit[w[:, -1]]).sum(1) / np.linalg.norm(mean, axis=1)}
    for system, expected in want.items():
        got = t[(t.system == system) & (t.metric == "cosine")].value.to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_recipe_declarations_match_the_contract():
    assert RECIPE.metric("mrr").direction == "higher"
    assert RECIPE.metric("rank").direction == "lower"
    embed = RECIPE.stage("embed")
    assert "train_fraction" not in embed.params and "arch" not in embed.params
    assert not embed.seeded and RECIPE.stage("train").seeded
    base = RECIPE.stage("baseline")  # shared across arch and seed: one ridge fit per size
    assert not base.seeded and "arch" not in base.params and "train" not in base.needs
    assert RECIPE.stage("train").checkpoints and RECIPE.stage("evaluate").emits_scores
    declared = {k for s in RECIPE.stages for k in s.params}
    assert declared == set(LvmParams.model_fields)
    new = RECIPE.stage("train").oom({"train": {"batch_size": 256, "grad_accum": 1}})
    assert new["train"] == {"batch_size": 128, "grad_accum": 2}
    with pytest.raises(Exception, match="extra"):
        LvmParams.model_validate({"arhc": "gru"})


def test_levels_filter_chunks_and_group_errors(tmp_path, corpus):
    c = chain(tmp_path / "a", corpus, data={"source": str(corpus), "levels": ["Adv"],
                                            "unit_sentences": 2})
    s = c.run("prepare")
    units = pq.read_table(c.dirs["prepare"] / "units.parquet").to_pylist()
    assert s["documents"] == 6 and all(u["doc_id"].startswith("Adv/") for u in units)
    assert s["units"] == 6 * 5  # 9 sentences in chunks of 2 -> 5 units per document
    assert units[0]["text"].count("sentence number") == 2
    with pytest.raises(StageError, match=r"data.levels \['C2'\] matches no document; levels "
                                         r"present: \['adv', 'ele'\]"):
        chain(tmp_path / "b", corpus, data={"source": str(corpus), "levels": ["C2"]}).run(
            "prepare")
    with pytest.raises(StageError, match="split.group_by = 'author': 12 document"):
        chain(tmp_path / "c", corpus, split={"group_by": "author"}).run("prepare")


def test_old_param_names_are_still_read_under_the_new_words():
    """`split.val` and `baselines` were renamed to every recipe's words (`split.valid`,
    `baseline`); a study file with the old names keeps working and is written back in the new."""
    from fairtrial.recipes.lvm.params import LvmParams

    old = LvmParams.model_validate({"split": {"val": 0.25}, "baselines": {"ridge_alpha": 3.0}})
    new = LvmParams.model_validate({"split": {"valid": 0.25}, "baseline": {"ridge_alpha": 3.0}})
    assert old == new and old.split.valid == 0.25 and old.baseline.ridge_alpha == 3.0
    dumped = old.model_dump()
    assert dumped["split"]["valid"] == 0.25 and "val" not in dumped["split"]
    assert "baseline" in dumped and "baselines" not in dumped
    with pytest.raises(ValueError, match="valid \\+ test"):
        LvmParams.model_validate({"split": {"val": 0.5, "test": 0.5}})
