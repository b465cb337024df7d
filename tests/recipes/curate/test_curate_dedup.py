"""dedup: exact after normalisation, near-duplicates verified by real Jaccard, representatives,
contamination, and both MinHash backends."""

import random
from pathlib import Path

import pytest

from fairtrial.data.instructions import read_gsm8k
from fairtrial.recipes.curate.dedup import deduplicate, jaccard, normalise, shingles

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def _edit(text: str, rng: random.Random, n: int) -> str:
    """Replace n words: a near-duplicate of known, high similarity."""
    w = text.split()
    for k in rng.sample(range(len(w)), n):
        w[k] = "zzedit"
    return " ".join(w)


@pytest.fixture(scope="module")
def questions():
    return [r.prompt for r in read_gsm8k(DATA / "gsm8k" / "train.jsonl")[:400]]


@pytest.mark.parametrize("backend", ["rensa", "datasketch"])
def test_near_duplicates_found_verified_and_represented(questions, backend):
    rng = random.Random(0)
    texts = list(questions)
    pairs = []
    for k in range(60):   # 60 near-duplicates with one word edited in 40+ word questions
        src = texts[k]
        if len(src.split()) < 40:
            continue
        texts.append(_edit(src, rng, 1))
        pairs.append((k, len(texts) - 1))
    texts.append("  " + questions[100].upper() + "  ")   # exact after normalisation
    ids = [f"s{i:04d}" for i in range(len(texts))]
    quality = [0.5] * len(texts)
    quality[pairs[0][1]] = 0.9   # the edited copy is "better": it must be the representative
    res = deduplicate(ids, texts, quality, threshold=0.8, backend=backend, contamination=False)
    removed = {r.index: r for r in res.removed}
    assert removed[len(texts) - 1].rule == "exact" and removed[len(texts) - 1].representative == "s0100"
    truth = [(a, b) for a, b in pairs if jaccard(shingles(texts[a]), shingles(texts[b])) >= 0.8]
    assert len(truth) >= 15
    found = sum(1 for a, b in truth if (a in removed) != (b in removed))
    assert found == len(truth)   # every true pair at >= threshold: one kept, one removed
    a, b = pairs[0]
    assert b not in removed and removed[a].representative == ids[b] and removed[a].rule == "near"
    assert removed[a].similarity >= 0.8
    kept = set(res.kept)
    assert all(r.rule == "exact" or ids.index(r.representative) in kept for r in res.removed)
    for c in res.clusters:   # no cluster emptied: exactly one member kept
        assert sum(1 for i in c if i in kept) == 1


def test_verification_rejects_lsh_candidates_below_threshold():
    base = " ".join(f"w{i}" for i in range(60))
    half = " ".join(f"w{i}" for i in range(30)) + " " + " ".join(f"v{i}" for i in range(30))
    res = deduplicate(["a", "b"], [base, half], [1, 1], threshold=0.8, num_perm=128, bands=128)
    assert res.kept == [0, 1] and not res.removed   # Jaccard ~0.3: maybe a candidate, never removed


def test_contamination_exact_and_near_and_cross_source():
    test = read_gsm8k(DATA / "gsm8k" / "test.jsonl")[:30]
    socratic = read_gsm8k(DATA / "gsm8k" / "test_socratic.jsonl")[:30]
    train = read_gsm8k(DATA / "gsm8k" / "train.jsonl")[:50]
    texts = [r.prompt for r in train] + [r.prompt for r in socratic] + [test[5].prompt + " Explain."]
    ids = [r.id for r in train] + [r.id for r in socratic] + ["edited"]
    res = deduplicate(ids, texts, [1.0] * len(ids), eval_ids=[r.id for r in test[:10]],
                      eval_texts=[r.prompt for r in test[:10]], threshold=0.8)
    rule = {ids[r.index]: (r.rule, r.representative) for r in res.removed}
    for k in range(10):
        assert rule[socratic[k].id] == ("contamination", test[k].id)
    assert rule["edited"] == ("contamination", test[5].id)
    assert set(rule) == {*[s.id for s in socratic[:10]], "edited"}


def test_normalisation_and_bad_threshold():
    assert normalise("  Ｈｅｌｌｏ\tWORLD\n") == "hello world"
    with pytest.raises(ValueError, match=r"dedup.threshold = 1.5 is outside \(0, 1\]"):
        deduplicate(["a"], ["x"], [1], threshold=1.5)
    with pytest.raises(ValueError, match="not unique"):
        deduplicate(["a", "a"], ["x", "y"], [1, 1])


def test_cross_source_exact_duplicates_gsm8k_test_and_socratic():
    test = read_gsm8k(DATA / "gsm8k" / "test.jsonl")[:30]
    socratic = read_gsm8k(DATA / "gsm8k" / "test_socratic.jsonl")[:30]
    rows = list(test) + list(socratic)
    quality = [0.5] * 30 + [0.9] * 30   # the socratic copies score higher: they stay
    res = deduplicate([r.id for r in rows], [r.prompt for r in rows], quality, threshold=0.8)
    assert sorted(res.kept) == list(range(30, 60))
    assert all(r.rule == "exact" and r.representative == socratic[r.index].id for r in res.removed)
