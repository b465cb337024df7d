"""Masking statistics on real text, and the shard format round trip."""

import collections
from pathlib import Path

import numpy as np
import pytest

from fairtrial.data import read_cefr_sp, read_onestopenglish
from fairtrial.recipes.ilm import masking as M
from fairtrial.recipes.ilm import tokenizer as T
from fairtrial.recipes.ilm.examples import ExampleShards, ShardWriter

DATA = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="module")
def onestop():
    return read_onestopenglish(DATA / "onestopenglish")


def _stats(docs, tok, cfg, n_masks=16, min_spans=0):
    be = tok.backend_tokenizer
    counts = collections.Counter()
    masked = total = 0
    for d in docs:
        enc = be.encode(d.text, add_special_tokens=False)
        ends = np.array([e for _, e in enc.offsets], np.int64)
        masks, _ = M.distinct_masks(M.doc_tree(d.text), cfg, M.doc_rng(0, d.id), n_masks,
                                    min_spans=min_spans)
        for mk in masks:
            spans = M.to_token_spans(mk, ends)
            counts.update(t for t, _, _ in spans)
            masked += sum(b - a for _, a, b in spans)
            total += len(enc.ids)
    return masked / total, counts


def test_hierarchical_rate_and_span_types(onestop):
    docs = onestop[::3]
    tok = T.train_bpe((d.text for d in docs), vocab_size=1000)
    rate, counts = _stats(docs, tok, M.MaskConfig(p=0.03))
    assert 0.12 < rate < 0.22, rate  # the paper: about 15% of tokens at p = 0.03
    assert set(counts) == set(M.SPAN_TYPES)
    cefr = read_cefr_sp(DATA / "cefr-sp" / "wikiauto_dev.tsv")
    _, counts = _stats(cefr, tok, M.MaskConfig(p=0.03), n_masks=4)
    assert set(counts) == set(M.SPAN_TYPES)


def test_single_type_maskers_and_distinct_masks(onestop):
    d = onestop[0]
    tree = M.doc_tree(d.text)
    for kind in ("word", "ngram", "sentence", "paragraph"):
        masks, _ = M.distinct_masks(tree, M.MaskConfig(kind=kind, p=0.05), M.doc_rng(1, d.id), 16)
        assert len(masks) == 16 and len(set(masks)) == 16
        assert {t for mk in masks for t, _, _ in mk} == {kind}
    a, _ = M.distinct_masks(tree, M.MaskConfig(), M.doc_rng(7, d.id), 16)
    b, _ = M.distinct_masks(tree, M.MaskConfig(), M.doc_rng(7, d.id), 16)
    c, _ = M.distinct_masks(tree, M.MaskConfig(), M.doc_rng(8, d.id), 16)
    assert a == b and a != c


def test_example_layout_round_trips_text():
    text = "She ate leftover pasta for lunch. It was cold."
    tok = T.train_bpe([text] * 5, vocab_size=300, min_frequency=1)
    ids = T.special_ids(tok)
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    ends = np.array([e for _, e in enc.offsets])
    w = text.index("leftover")
    mask = (("word", w, w + len("leftover")), ("sentence", text.index("It"), len(text)))
    ex, start = M.build_example(enc.ids, M.to_token_spans(mask, ends), ids, ids["start_infill"],
                                ids["end_infill"], ids["eos"])
    assert tok.decode(ex) == ("She ate<|blank_word|> pasta for lunch.<|blank_sentence|>"
                              "<|start_infill|> leftover<|end_infill|> It was cold.<|end_infill|>"
                              "<|endoftext|>")
    assert ex[start] == ids["start_infill"]


def test_shards_round_trip_and_incomplete(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 2**32 - 1, rng.integers(1, 30), dtype=np.int64) for _ in range(200)]
    w = ShardWriter(tmp_path / "s", shard_tokens=100)
    for i, s in enumerate(seqs[:50]):
        w.add(s, item_id=f"d{i}", record={"infill_start": 0})
    w.add_many(np.concatenate(seqs[50:]), [len(s) for s in seqs[50:]],
               [f"d{i}" for i in range(50, 200)], [{"infill_start": 0}] * 150)
    meta = w.close(note="x")
    assert meta["n_examples"] == 200 and len(meta["shards"]) > 5 and meta["note"] == "x"
    sh = ExampleShards(tmp_path / "s")
    assert len(sh) == 200 and all((sh[i] == seqs[i]).all() for i in range(200))
    assert isinstance(sh[3].base, np.memmap) or isinstance(sh[3], np.memmap)
    assert (sh.lengths() == [len(s) for s in seqs]).all()
    assert sh.item_ids()[-1] == "d199"
    w2 = ShardWriter(tmp_path / "t")
    w2.add([1, 2, 3])
    with pytest.raises(ValueError, match="no meta.json"):
        ExampleShards(tmp_path / "t")  # not closed: incomplete
    with pytest.raises(ValueError, match="every example or for none"):
        w2.add([4], item_id="x")
