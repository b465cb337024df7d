"""The ilm data stages end to end on real CEFR-SP text with a fake stage context, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from fairtrial.data.split import split_documents
from fairtrial.recipes.api import StageError
from fairtrial.recipes.ilm import RECIPE
from fairtrial.recipes.ilm import documents as D
from fairtrial.recipes.ilm import stages as S
from fairtrial.recipes.ilm.examples import ExampleShards
from fairtrial.recipes.ilm.params import IlmParams
from fairtrial.recipes.testing import FakeContext as Ctx
from fairtrial.recipes.testing import StageRunner, stage_params

DATA = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data").resolve()


def _sample_cefr(tmp_path, n=400):
    lines = (DATA / "cefr-sp" / "wikiauto_train.tsv").read_text().splitlines()
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(lines), n, replace=False))
    f = tmp_path / "cefr.tsv"
    f.write_text("\n".join(lines[i] for i in pick) + "\n")
    return f


def _run(tmp_path, params, name, inputs):
    run = StageRunner(RECIPE, tmp_path, params, dirs=inputs)
    return run.run(name), run.dirs[name]


def test_chain_prepare_tokenizer_examples_testset(tmp_path):
    data = _sample_cefr(tmp_path)
    params = IlmParams.model_validate({
        "data": {"source": str(data), "format": "cefr-sp", "level_rule": "max"},
        "tokenizer": {"vocab_size": 600}, "masking": {"n_masks": 4, "workers": 2},
        "train_level": ["B1", "B2"], "testset": {"n_masks": 2}}).model_dump()
    summ, prep = _run(tmp_path, params, "prepare", {})
    counts = summ["counts"]
    assert counts["all"]["train"] + counts["all"]["valid"] + counts["all"]["test"] == 400
    rows = {p: [json.loads(x) for x in (prep / f"{p}.jsonl").read_text().splitlines()]
            for p in ("train", "valid", "test")}
    ids = [{r["id"] for r in rows[p]} for p in rows]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    # the split is deterministic
    (tmp_path / "again").mkdir()
    S.prepare(Ctx(params=stage_params(RECIPE, "prepare", params), out=tmp_path / "again"))
    assert (tmp_path / "again" / "test.jsonl").read_text() == (prep / "test.jsonl").read_text()

    summ, tok_dir = _run(tmp_path, params, "tokenizer", {"prepare": prep})
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert "<|blank_ngram|>" in tok.get_vocab()

    summ, ex = _run(tmp_path, params, "examples", {"prepare": prep, "tokenizer": tok_dir})
    train = ExampleShards(ex / "train")
    n_docs = sum(1 for r in rows["train"] if r["level"] in ("B1", "B2"))
    assert summ["train"]["n_docs"] == n_docs
    assert n_docs * 2 < len(train) <= n_docs * 4
    start = tok.convert_tokens_to_ids("<|start_infill|>")
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert all(e[-1] == eos and (e == start).sum() == 1 for e in train)
    assert 0.05 < summ["train"]["token_mask_rate"] < 0.6

    summ, ts = _run(tmp_path, params, "testset", {"prepare": prep, "tokenizer": tok_dir})
    assert set(summ) == set(counts) - {"all"}
    for level, s in summ.items():
        shards = ExampleShards(ts / level)
        items = shards.items()
        assert len(items) == len(shards) == s["n_examples"]
        assert all(shards[i][r["infill_start"]] == start for i, r in enumerate(items))
        assert all("/" in r["item_id"] for r in items)  # two masks per document
        assert shards.meta["eval_set_digest"] == s["eval_set_digest"]
    # identical for every arm: a different train_level/masking does not change the test set
    other = dict(params, train_level="all", masking=dict(params["masking"], p=0.1))
    out2 = tmp_path / "testset2"
    out2.mkdir()
    summ2 = S.testset(Ctx(params=stage_params(RECIPE, "testset", other), out=out2,
                          inputs={"prepare": prep, "tokenizer": tok_dir}))
    assert summ2 == summ


def test_duplicates_and_groups_never_straddle(tmp_path):
    f = tmp_path / "d.jsonl"
    rows = []
    for i in range(60):
        rows.append({"text": f"Text number {i % 20} here.", "level": "a" if i < 30 else "b"})
        rows.append({"text": f"  TEXT number {i % 20}   here. ", "level": "a" if i < 30 else "b"})
    f.write_text("\n".join(json.dumps(r) for r in rows))
    from fairtrial.data import read_table

    parts = split_documents(read_table(f), seed=3)
    norm = {p: {" ".join(d.text.lower().split()) for d in parts[p]} for p in parts}
    assert not (norm["train"] & norm["test"] or norm["train"] & norm["valid"]
                or norm["valid"] & norm["test"])
    from fairtrial.data import read_onestopenglish

    parts = split_documents(read_onestopenglish(DATA / "onestopenglish"), seed=0)
    topics = {p: {d.meta["topic"] for d in parts[p]} for p in parts}
    assert not (topics["train"] & topics["test"] or topics["valid"] & topics["test"])
    assert len(parts["test"]) % 3 == 0 and len(parts["test"]) > 0


def test_bad_input_is_a_stage_error(tmp_path):
    f = tmp_path / "small.jsonl"
    f.write_text("\n".join(json.dumps({"text": f"t {i}", "level": "x" if i else "y"})
                           for i in range(10)))
    params = IlmParams.model_validate({"data": str(f)}).model_dump()
    out = tmp_path / "p"
    out.mkdir()
    with pytest.raises(StageError, match='level "y" has 1 document.*needs at least 3'):
        S.prepare(Ctx(params=stage_params(RECIPE, "prepare", params), out=out))
    assert not any(out.iterdir())  # nothing half-written
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x", "level": "a"}\n')
    params = IlmParams.model_validate({"data": str(bad)}).model_dump()
    with pytest.raises(StageError, match="missing column"):
        S.prepare(Ctx(params=stage_params(RECIPE, "prepare", params), out=out))
    params = IlmParams.model_validate({"data": str(tmp_path / "nope.csv")}).model_dump()
    with pytest.raises(StageError, match="neither an existing file"):
        S.prepare(Ctx(params=stage_params(RECIPE, "prepare", params), out=out))
    # a tokenizer path that does not exist
    prep = tmp_path / "prep"
    prep.mkdir()
    (prep / "train.jsonl").write_text('{"id": "1", "level": "a", "text": "x"}\n')
    tparams = {"tokenizer": {"name": str(tmp_path / "no-such-tokenizer")}}
    tout = tmp_path / "tok"
    tout.mkdir()
    with pytest.raises(StageError, match="tokenizer: tokenizer.name '.*no-such-tokenizer': no such folder"):
        S.tokenizer(Ctx(params=stage_params(RECIPE, "tokenizer", tparams), out=tout,
                        inputs={"prepare": prep}))
    assert not any(tout.iterdir())


def test_params_errors():
    with pytest.raises(ValueError, match='unknown level "D1"; known: A1, A2, B1, B2, C1, C2'):
        IlmParams.model_validate({"data": "cefr-sp", "train_level": "D1"})
    with pytest.raises(ValueError, match="sum to 1"):
        IlmParams.model_validate({"data": "cefr-sp", "split": {"train": 0.9, "test": 0.2}})
    with pytest.raises(ValueError, match="Extra inputs"):
        IlmParams.model_validate({"data": "cefr-sp", "masking": {"pp": 1}})
