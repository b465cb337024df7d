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
        masks, _ = M.distinct_masks(M.doc_tree(d.text), cfg, M.doc_key(0, d.id), n_masks,
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
    assert 0.12 < rate < 0.18, rate  # the paper: about 15% of tokens at p = 0.03
    assert set(counts) == set(M.SPAN_TYPES)
    cefr = read_cefr_sp(DATA / "cefr-sp" / "wikiauto_dev.tsv")
    _, counts = _stats(cefr, tok, M.MaskConfig(p=0.03), n_masks=4)
    assert set(counts) == set(M.SPAN_TYPES)


def test_single_type_maskers_and_distinct_masks(onestop):
    d = onestop[0]
    tree = M.doc_tree(d.text)
    for kind in ("word", "ngram", "sentence", "paragraph"):
        masks, _ = M.distinct_masks(tree, M.MaskConfig(kind=kind, p=0.05), M.doc_key(1, d.id), 16)
        assert len(masks) == 16 and len(set(masks)) == 16
        assert {t for mk in masks for t, _, _ in mk} == {kind}
    a, _ = M.distinct_masks(tree, M.MaskConfig(), M.doc_key(7, d.id), 16)
    b, _ = M.distinct_masks(tree, M.MaskConfig(), M.doc_key(7, d.id), 16)
    c, _ = M.distinct_masks(tree, M.MaskConfig(), M.doc_key(8, d.id), 16)
    assert a == b and a != c


def _walk(text, cfg, key, n_masks, max_retries, min_spans):
    """The paper's walk written sequentially, one node at a time, from the same draws as
    mask_batch (masking._uniform): the reference the vectorised masker must equal."""
    tree = M.doc_tree(text)
    u = lambda c, tag, node: float(M._uniform(np.array([key], np.uint64), np.array([c]), tag,
                                              np.array([node]))[0])
    lp, (lo, hi) = cfg.level_p(), cfg.ngram_range()
    P, S, W = len(tree.para), len(tree.sent), len(tree.word)
    out, seen, rejected = [], set(), 0
    for c in range(n_masks * (1 + max_retries)):
        if len(out) == n_masks:
            break
        spans = []
        # word triggers: Bernoulli(p) per word, as geometric gaps between hits (gap j: draw j)
        hits, at, j = set(), -1, 0
        while lp["word"] > 0:
            at += 1 + int(np.floor(np.log1p(-u(c, 3, j)) / np.log1p(-lp["word"])))
            j += 1
            if at >= W:
                break
            hits.add(at)
        if u(c, 0, 0) < lp["document"]:
            spans = [("document", 0, len(text))]
        else:
            for pi in range(P):
                if u(c, 1, pi) < lp["paragraph"]:
                    spans.append(("paragraph", *tree.para[pi].tolist()))
                    continue
                for si in np.flatnonzero(tree.sent_para == pi):
                    if u(c, 2, si) < lp["sentence"]:
                        spans.append(("sentence", *tree.sent[si].tolist()))
                        continue
                    w = int(np.searchsorted(tree.word_sent, si))
                    while w < tree.sent_word_end[si]:
                        if w in hits:
                            is_ng = u(c, 5, w) < cfg.ngram_share()
                            n = lo + int(u(c, 4, w) * (hi - lo + 1)) if is_ng else 1
                            k = min(n, int(tree.sent_word_end[si]) - w)
                            if k >= lo:
                                spans.append(("ngram" if is_ng else "word",
                                              int(tree.word[w, 0]), int(tree.word[w + k - 1, 1])))
                                w += k
                                continue
                        w += 1
        mk = tuple(sorted(spans, key=lambda s: s[1]))
        if len(mk) < min_spans or mk in seen:
            rejected += 1
            continue
        seen.add(mk)
        out.append(mk)
    return out, rejected


@pytest.mark.parametrize("kind,p", [("hierarchical", 0.03), ("hierarchical", 0.3), ("ngram", 0.2),
                                    ("word", 0.1), ("sentence", 0.2), ("document", 0.5)])
def test_vectorised_masks_equal_sequential_walk(onestop, kind, p):
    texts = [d.text[:900] for d in onestop[:12]] + [
        "One. Two three four. Five", "a", "Mr. Smith left.\n\nNew para here. And more words here"]
    cfg = M.MaskConfig(kind=kind, p=p)
    for i, t in enumerate(texts):
        key = M.doc_key(3, f"d{i}")
        for n_masks, retries, min_spans in ((16, 8, 1), (4, 0, 2), (3, 2, 0)):
            got = M.distinct_masks(M.doc_tree(t), cfg, key, n_masks, retries, min_spans)
            assert got == _walk(t, cfg, key, n_masks, retries, min_spans), (kind, i, n_masks)
    # a batch gives each document the masks it gets alone
    fo = M.forest(texts)
    ms = M.mask_batch(fo, [M.doc_key(3, f"d{i}") for i in range(len(texts))], cfg)
    alone = [len(M.distinct_masks(M.doc_tree(t), cfg, M.doc_key(3, f"d{i}"))[0])
             for i, t in enumerate(texts)]
    assert np.bincount(ms.ex_doc, minlength=len(texts)).tolist() == alone


def test_built_examples_equal_per_example_reference(tmp_path, onestop):
    """build_shards (batched numpy gather) against to_token_spans + build_example per mask."""
    from fairtrial.recipes.ilm.examples import build_shards

    docs = [(d.id, d.text[:700]) for d in onestop[:40]] + [("empty", "  "), ("tiny", "Hi.")]
    tok = T.train_bpe((t for _, t in docs), vocab_size=500)
    tok.save_pretrained(str(tmp_path / "tok"))
    meta = build_shards(iter(docs), tmp_path / "s", tmp_path / "tok" / "tokenizer.json",
                        n_masks=4, seed=5, records=True, batch_docs=16)
    sh = ExampleShards(tmp_path / "s")
    ids = T.special_ids(tok)
    be = tok.backend_tokenizer
    want, want_items = [], []
    for doc_id, text in docs:
        enc = be.encode(text, add_special_tokens=False)
        if not enc.ids:
            continue
        ends = np.array([e for _, e in enc.offsets], np.int64)
        masks, _ = M.distinct_masks(M.doc_tree(text), M.MaskConfig(), M.doc_key(5, doc_id), 4)
        for k, mk in enumerate(masks):
            spans = M.to_token_spans(mk, ends)
            ex, start = M.build_example(enc.ids, spans, ids, ids["start_infill"],
                                        ids["end_infill"], ids["eos"])
            want.append(ex)
            want_items.append({"item_id": f"{doc_id}/{k}", "doc": doc_id, "infill_start": start,
                               "n_spans": len(spans), "span_types": [t for t, _, _ in spans]})
    assert len(sh) == len(want) == meta["n_examples"]
    assert all(sh[i].tolist() == want[i] for i in range(len(want)))
    assert sh.items() == want_items


def test_long_documents_are_cut_into_pieces(tmp_path, onestop):
    from fairtrial.recipes.ilm.examples import build_shards

    docs = [(d.id, d.text) for d in onestop[:6]]
    tok = T.train_bpe((t for _, t in docs), vocab_size=400)
    tok.save_pretrained(str(tmp_path / "tok"))
    meta = build_shards(iter(docs), tmp_path / "s", tmp_path / "tok" / "tokenizer.json",
                        n_masks=1, records=True, max_doc_tokens=256)
    sh = ExampleShards(tmp_path / "s")
    items = sh.items()
    assert meta["n_docs"] == 6 and len(items) > 6
    assert meta["n_pieces"] == len(items) + meta["docs_without_mask"]
    assert all("#" in r["item_id"] for r in items)
    # every piece remembers its document; evaluation scores one item per document, summing the
    # NLL and tokens of its pieces (the bootstrap then resamples independent documents)
    assert all(r["item_id"].startswith(r["doc"] + "#") for r in items)
    assert {r["doc"] for r in items} <= {d for d, _ in docs}
    from fairtrial.recipes.ilm.evaluate import CONTEXT, END, INFILL, item_rows, open_testset

    _, item_ids, _ = open_testset(tmp_path / "s")
    assert item_ids == [r["doc"] for r in items]
    n = len(items)
    sums = {f"{w}_{k}": np.arange(1.0, n + 1) for w in ("nll", "n") for k in (INFILL, END, CONTEXT)}
    rows, _ = item_rows(item_ids, sums, eval_set="Adv", digest="d")
    ppl = [r for r in rows if r["metric"] == "infill_ppl"]
    assert len(ppl) == len(set(item_ids)) < n
    first = item_ids[0]
    assert ppl[0]["item_id"] == first
    assert ppl[0]["nll_sum"] == sum(i + 1.0 for i, d in enumerate(item_ids) if d == first)
    # an example holds its piece's tokens once (context + answers) plus 2 per span and 2 more
    n_text = sh.lengths() - 2 * np.array([r["n_spans"] for r in items]) - 2
    assert n_text.max() <= 256 and n_text.mean() > 128


def test_add_many_splits_shards_like_add(tmp_path):
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 1000, rng.integers(1, 40)) for _ in range(300)] + [np.arange(250)]
    one = ShardWriter(tmp_path / "one", shard_tokens=97)
    for s in seqs:
        one.add(s)
    many = ShardWriter(tmp_path / "many", shard_tokens=97)
    for a, b in ((0, 7), (7, 150), (150, 151), (151, 301)):
        many.add_many(np.concatenate(seqs[a:b]), [len(s) for s in seqs[a:b]])
    assert one.close()["shards"] == many.close()["shards"]
    for name in ("one", "many"):
        sh = ExampleShards(tmp_path / name)
        assert all((sh[i] == seqs[i]).all() for i in range(len(seqs)))
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "many" / f).read_bytes()
               for f in files if f != "meta.json")


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
