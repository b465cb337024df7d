"""The five next-vector predictors. Each maps contexts (batch, k, d) to a prediction (batch, d).

Sizes are parameters (hidden, layers, heads); the defaults in params.py are small enough for a
laptop CPU. Every model ends in `_finish`, which optionally projects to the unit sphere: sentence
embeddings (MiniLM) are unit vectors, so predictions are compared by cosine. `load_model`,
`predict` and `latency_ms` serve the evaluate stage (and tests) with a trained model.pt.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _Base(nn.Module):
    def __init__(self, dim: int, normalize_output: bool, residual: str = "none"):
        super().__init__()
        self.dim = dim
        self.normalize_output = normalize_output
        self.residual = residual

    def _finish(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        # residual="last": predict a correction to the last context vector, so the model starts
        # from the copy-last baseline instead of having to rediscover it ("mean": from the mean)
        if self.residual == "last" and x is not None:
            y = y + x[:, -1]
        elif self.residual == "mean" and x is not None:
            y = y + x.mean(dim=1)
        return F.normalize(y, dim=-1) if self.normalize_output else y


class AMN(_Base):
    """Attentive mean network: the mean of the context plus an attention-weighted residual.

    The mean of the context is itself a strong baseline (cosine about 0.55 on news text); the
    model starts from it and learns only a correction, so it cannot do worse than the mean by
    much even when trained on little data. The output is always normalised."""

    def __init__(self, dim: int, k: int, hidden: int = 128, heads: int = 4, dropout: float = 0.1,
                 normalize_output: bool = True, **_):
        super().__init__(dim, True)
        self.inp = nn.Linear(dim, hidden)
        self.pos = nn.Parameter(torch.zeros(k, hidden))
        self.query = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.pos[: x.shape[1]]
        q = self.query.expand(x.shape[0], -1, -1)
        a, _ = self.attn(q, h, h, need_weights=False)
        return self._finish(x.mean(dim=1) + self.out(a[:, 0]))


class LSTMModel(_Base):
    def __init__(self, dim: int, k: int, hidden: int = 128, layers: int = 2, dropout: float = 0.1,
                 normalize_output: bool = True, residual: str = "none", **_):
        super().__init__(dim, normalize_output, residual)
        self.inp = nn.Linear(dim, hidden)
        self.rnn = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.inp(x))
        return self._finish(self.out(h[:, -1]), x)


class GRUModel(_Base):
    """Stacked GRU layers, each wrapped in a residual block (pre-norm, dropout, skip)."""

    def __init__(self, dim: int, k: int, hidden: int = 128, layers: int = 2, dropout: float = 0.1,
                 normalize_output: bool = True, residual: str = "none", **_):
        super().__init__(dim, normalize_output, residual)
        self.inp = nn.Linear(dim, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.grus = nn.ModuleList(nn.GRU(hidden, hidden, batch_first=True) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for norm, gru in zip(self.norms, self.grus):
            y, _ = gru(norm(h))
            h = h + self.drop(y)
        return self._finish(self.out(h[:, -1]), x)


class TransformerModel(_Base):
    """A causal decoder with learned positions; the prediction is read at the last position."""

    def __init__(self, dim: int, k: int, hidden: int = 128, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1, normalize_output: bool = True, residual: str = "none",
                 **_):
        super().__init__(dim, normalize_output, residual)
        self.inp = nn.Linear(dim, hidden)
        self.pos = nn.Parameter(torch.randn(k, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(k),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        h = self.blocks(self.inp(x) + self.pos[:n], mask=self.causal[:n, :n], is_causal=True)
        return self._finish(self.out(self.norm(h[:, -1])), x)


class GraphMERTModel(_Base):
    """GraphMERT-style encoder: bidirectional attention restricted to a local window (each unit
    is a node linked to its neighbours at distance <= local_window), then mean-pooled.

    The original GraphMERT couples a text encoder with a knowledge graph; what carries over to a
    sequence of sentence vectors is the locality-masked, bidirectional encoder with pooling."""

    def __init__(self, dim: int, k: int, hidden: int = 128, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1, local_window: int = 1, normalize_output: bool = True,
                 residual: str = "none", **_):
        super().__init__(dim, normalize_output, residual)
        self.inp = nn.Linear(dim, hidden)
        self.pos = nn.Parameter(torch.randn(k, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        i = torch.arange(k)
        far = (i[:, None] - i[None, :]).abs() > local_window
        self.register_buffer("local", far, persistent=False)  # True = may not attend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        h = self.blocks(self.inp(x) + self.pos[:n], mask=self.local[:n, :n])
        return self._finish(self.out(self.norm(h).mean(dim=1)), x)


ARCHITECTURES = {
    "amn": AMN,
    "lstm": LSTMModel,
    "gru": GRUModel,
    "transformer": TransformerModel,
    "graphmert": GraphMERTModel,
}


def build_model(arch: str, dim: int, k: int, **model_params) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](dim=dim, k=k, **model_params)


# -- a trained model: load it, predict with it, time it (the evaluate stage) ------------------

def load_model(train_dir: Path, device: str = "cpu"):
    ck = torch.load(Path(train_dir) / "model.pt", map_location=device, weights_only=False)
    c = ck["config"]
    model = build_model(c["arch"], c["dim"], c["k"], **c["model"])
    model.load_state_dict(ck["state_dict"])
    return model.to(device).eval()


def predict(model, contexts: np.ndarray, batch_size: int = 1024, device: str = "cpu"):
    out = []
    with torch.no_grad():
        for s in range(0, len(contexts), batch_size):
            xb = torch.as_tensor(np.asarray(contexts[s:s + batch_size]), dtype=torch.float32,
                                 device=device)
            out.append(model(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, contexts.shape[-1]), np.float32)


def latency_ms(model, contexts: np.ndarray, batch: int, device: str, repeats: int) -> float:
    """Median milliseconds per forward call at this batch size (after one warm-up call)."""
    reps = np.resize(contexts, (batch,) + contexts.shape[1:]) if len(contexts) else contexts
    xb = torch.as_tensor(np.asarray(reps), dtype=torch.float32, device=device)
    times = []
    with torch.no_grad():
        model(xb)
        for _ in range(repeats):
            t = time.perf_counter()
            model(xb)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 3)
