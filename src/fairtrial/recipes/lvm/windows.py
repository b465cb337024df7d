"""Windows: k context units -> the next unit, inside one document only.

A window is stored as k+1 row indices into the embedding matrix (context rows, then the target
row), so a windows artifact is small and every arm reads the one shared embedding file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def document_windows(doc_rows: Sequence[int], k: int) -> np.ndarray:
    """All windows of one document: shape (len(doc_rows) - k, k + 1), or (0, k + 1) when the
    document has fewer than k + 1 units."""
    rows = np.asarray(doc_rows, dtype=np.int64)
    n = len(rows) - k
    if n <= 0:
        return np.empty((0, k + 1), np.int64)
    return np.stack([rows[i:i + k + 1] for i in range(n)])


def build_windows(docs: Sequence[tuple[str, Sequence[int]]], k: int):
    """docs: (doc_id, ordered embedding rows) pairs -> (windows, window ids, skipped doc ids).

    A window id is "<doc_id>#<target position>", stable across arms and runs."""
    parts, ids, skipped = [], [], []
    for doc_id, rows in docs:
        w = document_windows(rows, k)
        if len(w) == 0:
            skipped.append(doc_id)
            continue
        parts.append(w)
        ids.extend(f"{doc_id}#{t}" for t in range(k, k + len(w)))
    windows = np.concatenate(parts) if parts else np.empty((0, k + 1), np.int64)
    return windows, ids, skipped


def gather(vectors: np.ndarray, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(contexts (n, k, d), targets (n, d)) as float32 from row-index windows."""
    ctx = np.asarray(vectors[windows[:, :-1]], dtype=np.float32)
    tgt = np.asarray(vectors[windows[:, -1]], dtype=np.float32)
    return ctx, tgt
