"""Per-window scores and the trivial baselines (numpy only, no engine, no torch).

Retrieval: the candidates are the distinct units of the test documents (equal texts collapse into
one candidate, so a repeated sentence is not counted as a miss) minus the window's own context
units; a window's rank is 1 + the number of candidates strictly more similar to the prediction than
its true next unit.
"""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n == 0, 1.0, n)


def cosine(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.sum(unit(pred) * unit(target), axis=-1)


def retrieval_ranks(pred: np.ndarray, candidates: np.ndarray, target_idx: np.ndarray,
                    exclude: np.ndarray | None = None, chunk: int = 1024) -> np.ndarray:
    """Rank (1 = best) of candidates[target_idx[i]] among all candidates for prediction i.

    exclude (n, k): candidate indices window i may not retrieve (its own context: the answer is
    known not to be a sentence already read, and without this rule copy_last would retrieve its
    own input first by construction). An excluded index equal to the target is kept."""
    cand = unit(candidates)
    ranks = np.empty(len(pred), np.int64)
    for s in range(0, len(pred), chunk):
        sims = unit(pred[s:s + chunk]) @ cand.T
        tgt = target_idx[s:s + chunk]
        rows = np.arange(len(sims))
        own = sims[rows, tgt]
        if exclude is not None:
            ex = exclude[s:s + chunk]
            drop = ex != tgt[:, None]
            sims[np.repeat(rows, ex.shape[1])[drop.ravel()], ex.ravel()[drop.ravel()]] = -np.inf
        ranks[s:s + chunk] = 1 + (sims > own[:, None]).sum(axis=1)
    return ranks


def window_metrics(pred: np.ndarray, target: np.ndarray, candidates: np.ndarray,
                   target_idx: np.ndarray, exclude: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """metric name -> per-window values (the recipe's declared metrics)."""
    r = retrieval_ranks(pred, candidates, target_idx, exclude)
    return {
        "cosine": cosine(pred, target),
        "rank": r.astype(np.float64),
        "mrr": 1.0 / r,
        "recall_at_1": (r <= 1).astype(np.float64),
        "recall_at_5": (r <= 5).astype(np.float64),
    }


# -- trivial baselines -----------------------------------------------------------------------

def copy_last(contexts: np.ndarray) -> np.ndarray:
    """Predict the last context vector."""
    return np.asarray(contexts[:, -1], np.float64)


def mean_context(contexts: np.ndarray) -> np.ndarray:
    """Predict the mean of the context vectors."""
    return np.asarray(contexts, np.float64).mean(axis=1)


class Ridge:
    """Ridge regression from the flattened context to the next vector.

    Written with numpy's solver because it is one line of algebra and adding scikit-learn for it
    would add a dependency: W = (X'X + alpha I)^-1 X'Y on centred data, intercept from the means."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, contexts: np.ndarray, targets: np.ndarray) -> "Ridge":
        x = np.asarray(contexts, np.float64).reshape(len(contexts), -1)
        y = np.asarray(targets, np.float64)
        self.x_mean, self.y_mean = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - self.x_mean, y - self.y_mean
        gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        self.w = np.linalg.solve(gram, xc.T @ yc)
        return self

    @classmethod
    def select(cls, contexts: np.ndarray, targets: np.ndarray, val_contexts: np.ndarray,
               val_targets: np.ndarray, alphas=(0.1, 1.0, 10.0, 100.0, 1000.0)
               ) -> tuple["Ridge", dict[float, float]]:
        """Fit for each alpha, keep the one with the best mean validation cosine (the baseline
        gets the same tuning budget as the models' early stopping: the validation split).
        One eigendecomposition of X'X serves every alpha."""
        x = np.asarray(contexts, np.float64).reshape(len(contexts), -1)
        y = np.asarray(targets, np.float64)
        x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - x_mean, y - y_mean
        evals, evecs = np.linalg.eigh(xc.T @ xc)
        proj = evecs.T @ (xc.T @ yc)
        vx = np.asarray(val_contexts, np.float64).reshape(len(val_contexts), -1) - x_mean
        scores, best = {}, None
        for a in alphas:
            w = evecs @ (proj / (np.maximum(evals, 0) + a)[:, None])
            scores[a] = float(cosine(vx @ w + y_mean, val_targets).mean())
            if best is None or scores[a] > scores[best[0]]:
                best = (a, w)
        model = cls(best[0])
        model.x_mean, model.y_mean, model.w = x_mean, y_mean, best[1]
        return model, scores

    def predict(self, contexts: np.ndarray) -> np.ndarray:
        x = np.asarray(contexts, np.float64).reshape(len(contexts), -1)
        return (x - self.x_mean) @ self.w + self.y_mean
