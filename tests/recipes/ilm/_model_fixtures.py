"""Fixtures for the ILM model-side tests: a tiny tokenizer with the ILM special tokens, tiny ILM
examples made from synthetic sentences, and a fake stage context.

Everything is built in tmp_path from a fixed seed; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairtrial.recipes.ilm.model import BLANK_TOKENS, END_INFILL, EOS, START_INFILL

SPECIALS = [EOS, *BLANK_TOKENS.values(), START_INFILL, END_INFILL]

SUBJECTS = ["She", "He", "The girl", "My friend", "The teacher", "Tom", "Anna", "The dog"]
VERBS = ["walks", "runs", "goes", "drives", "rides", "talks", "reads", "sings"]
PLACES = ["to school", "to the park", "home", "to work", "to the shop", "in the garden"]
TIMES = ["every day", "on Monday", "in the morning", "at night", "after lunch", "today"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)} "
            f"{rng.choice(TIMES)} ." for _ in range(n)]


def make_tokenizer(folder: Path):
    """A byte-level BPE tokenizer (GPT-2 style) trained on the synthetic sentences, with the ILM
    special tokens; saved as a folder AutoTokenizer reads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sentences(300, seed=123), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   additional_special_tokens=SPECIALS[1:])
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return fast


def ilm_example(tok, text: str, rng: np.random.Generator) -> np.ndarray:
    """Mask one or two words of `text` ILM-style and return the example's token ids."""
    words = text.split(" ")
    n_blanks = int(rng.integers(1, 3))
    pos = sorted(rng.choice(len(words) - 1, size=n_blanks, replace=False).tolist())
    answers = [words[p] for p in pos]
    masked = [BLANK_TOKENS["word"] if i in pos else w for i, w in enumerate(words)]
    ctx = " ".join(masked)
    ids = tok(ctx, add_special_tokens=False)["input_ids"]
    ids.append(tok.convert_tokens_to_ids(START_INFILL))
    for a in answers:
        ids += tok(" " + a, add_special_tokens=False)["input_ids"]
        ids.append(tok.convert_tokens_to_ids(END_INFILL))
    ids.append(tok.convert_tokens_to_ids(EOS))
    return np.asarray(ids, dtype=np.uint32)


def make_examples(tok, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [ilm_example(tok, s, rng) for s in sentences(n, seed)]


def write_shards(folder: Path, examples: list[np.ndarray], item_ids: list[str] | None = None,
                 extra_meta: dict | None = None) -> Path:
    """Write examples in the examples-stage shard format (meta.json, tokens-*.bin, offsets-*.npy),
    with the data side's ShardWriter when it is there."""
    try:
        from fairtrial.recipes.ilm.examples import ShardWriter
    except ImportError:
        ShardWriter = None
    folder.mkdir(parents=True, exist_ok=True)
    if ShardWriter is not None:
        w = ShardWriter(folder)
        for i, e in enumerate(examples):
            w.add(e, item_id=None if item_ids is None else item_ids[i])
        w.close()
    else:
        flat = np.concatenate(examples).astype(np.uint32)
        offsets = np.zeros(len(examples) + 1, np.int64)
        offsets[1:] = np.cumsum([len(e) for e in examples])
        flat.tofile(folder / "tokens-00000.bin")
        np.save(folder / "offsets-00000.npy", offsets)
        meta = {"n_examples": len(examples), "n_tokens": int(offsets[-1]), "dtype": "uint32",
                "shards": [{"tokens": "tokens-00000.bin", "offsets": "offsets-00000.npy",
                            "n": len(examples)}]}
        if item_ids is not None:
            (folder / "item_ids.json").write_text(json.dumps(item_ids))
        (folder / "meta.json").write_text(json.dumps(meta))
    if extra_meta:
        meta = json.loads((folder / "meta.json").read_text())
        meta.update(extra_meta)
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def tiny_model(tok, n_layer: int = 2, n_embd: int = 32, dropout: float = 0.0, seed: int = 0):
    from fairtrial.recipes.ilm.model import ModelParams, build_model

    return build_model(ModelParams(n_layer=n_layer, n_embd=n_embd, n_head=2, n_positions=64,
                                   dropout=dropout), tok, seed=seed)


@dataclass
class FakeContext:
    """What a stage function needs from the engine, and nothing more."""

    params: dict[str, Any]
    out: Path
    inputs: dict[str, Path]
    checkpoint_dir: Path
    seed: int | None = 0
    device: str = "cpu"
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("fairtrial.test"))
    progress_calls: list = field(default_factory=list)
    heartbeats: int = 0

    def progress(self, done, total=None, unit="it", message=""):
        self.progress_calls.append((done, total, unit, message))

    def heartbeat(self):
        self.heartbeats += 1
