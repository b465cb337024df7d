import numpy as np
import pytest

from fairtrial.recipes.lvm import scoring
from fairtrial.recipes.lvm.windows import build_windows, document_windows, gather


def test_copy_last_and_mean_context_exact_on_hand_made_vectors():
    # one window, k = 3, d = 2: context e1, e2, (e1+e2)/|.|; target e2
    s = np.sqrt(0.5)
    ctx = np.array([[[1.0, 0.0], [0.0, 1.0], [s, s]]])
    tgt = np.array([[0.0, 1.0]])
    np.testing.assert_allclose(scoring.copy_last(ctx), [[s, s]])
    np.testing.assert_allclose(scoring.mean_context(ctx), [[(1 + s) / 3, (1 + s) / 3]])
    np.testing.assert_allclose(scoring.cosine(scoring.copy_last(ctx), tgt), [s])
    # mean is along the diagonal: cosine to e2 is sqrt(1/2) as well
    np.testing.assert_allclose(scoring.cosine(scoring.mean_context(ctx), tgt), [s])


def test_retrieval_ranks_count_strictly_better_candidates():
    cands = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    pred = np.array([[1.0, 0.1], [1.0, 0.1], [0.0, -1.0]])
    ranks = scoring.retrieval_ranks(pred, cands, np.array([0, 1, 2]))
    # pred0 ~ cand0 best -> 1; pred0 order: c0 > c3 > c1 > c2, target c1 -> 3;
    # pred2 = -e2: sims c0 0, c1 -1, c2 0, c3 -0.8 -> c2 ties with c0, strictly better: none -> 1
    assert ranks.tolist() == [1, 3, 1]
    m = scoring.window_metrics(pred, cands[[0, 1, 2]], cands, np.array([0, 1, 2]))
    assert m["mrr"].tolist() == pytest.approx([1, 1 / 3, 1])
    assert m["recall_at_1"].tolist() == [1, 0, 1]
    assert m["recall_at_5"].tolist() == [1, 1, 1]


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    ctx = rng.standard_normal((400, 3, 4))
    w = rng.standard_normal((12, 4))
    y = ctx.reshape(400, -1) @ w + 0.5
    pred = scoring.Ridge(alpha=1e-6).fit(ctx, y).predict(ctx)
    np.testing.assert_allclose(pred, y, atol=1e-4)


def test_windows_never_cross_documents_and_short_documents_are_skipped():
    docs = [("a", [0, 1, 2, 3, 4, 5]), ("short", [6, 7]), ("b", [8, 9, 10, 11])]
    w, ids, skipped = build_windows(docs, k=3)
    assert skipped == ["short"]
    assert ids == ["a#3", "a#4", "a#5", "b#3"]
    assert w.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [8, 9, 10, 11]]
    owner = {r: d for d, rows in docs for r in rows}
    for row in w:
        assert len({owner[r] for r in row}) == 1
    assert document_windows([1, 2, 3], k=3).shape == (0, 4)
    vecs = np.arange(24, dtype=np.float32).reshape(12, 2)
    c, t = gather(vecs, w)
    assert c.shape == (4, 3, 2) and t.tolist()[3] == vecs[11].tolist()


def test_retrieval_excludes_the_windows_own_context_but_never_the_target():
    cands = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    pred = np.array([[1.0, 0.0], [1.0, 0.0]])
    # window 0: context holds candidate 0 (the prediction itself), target 1 -> rank 1, not 2
    # window 1: the target text also occurs in the context: it stays a candidate
    ranks = scoring.retrieval_ranks(pred, cands, np.array([1, 0]), exclude=np.array([[0], [0]]))
    assert ranks.tolist() == [1, 1]
    assert scoring.retrieval_ranks(pred, cands, np.array([1, 0])).tolist() == [2, 1]


def test_ridge_select_picks_the_alpha_that_validates_best():
    rng = np.random.default_rng(1)
    # few noisy training windows, many features: a small alpha overfits, a large one helps
    ctx, val_ctx = rng.standard_normal((60, 5, 8)), rng.standard_normal((200, 5, 8))
    w = np.zeros((40, 8))
    w[:8] = np.eye(8)  # the next vector is the first context vector
    y = ctx.reshape(60, -1) @ w + 2.0 * rng.standard_normal((60, 8))
    vy = val_ctx.reshape(200, -1) @ w
    model, scores = scoring.Ridge.select(ctx, y, val_ctx, vy, alphas=(1e-6, 30.0))
    assert scores[30.0] > scores[1e-6] and model.alpha == 30.0
    # the chosen model equals a plain fit at that alpha
    plain = scoring.Ridge(30.0).fit(ctx, y)
    np.testing.assert_allclose(model.predict(val_ctx), plain.predict(val_ctx), atol=1e-8)
