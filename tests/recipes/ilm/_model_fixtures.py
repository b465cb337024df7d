"""Fixtures for the ILM model-side tests: a tiny tokenizer with the ILM special tokens, tiny ILM
examples made from synthetic sentences, and a trained model (through the recipe harness's fake
stage context, fairtrial.recipes.testing).

Everything is built in tmp_path from a fixed seed; nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# One thread, as tests/conftest.py sets for the whole session (also when this file is imported
# alone, by tests/ml/_curves.py writing the fixture): the tiny models gain nothing from more, and
# a float result must not depend on the machine's core count.
torch.set_num_threads(1)

from fairtrial.recipes.ilm.tokenizer import BLANK_TOKENS, END_INFILL, EOS, START_INFILL
from fairtrial.recipes.ilm import RECIPE
from fairtrial.recipes.testing import FakeContext, stage_params  # noqa: F401 (the tests' context)

SUBJECTS = ["She", "He", "The girl", "My friend", "The teacher", "Tom", "Anna", "The dog"]
VERBS = ["walks", "runs", "goes", "drives", "rides", "talks", "reads", "sings"]
PLACES = ["to school", "to the park", "home", "to work", "to the shop", "in the garden"]
TIMES = ["every day", "on Monday", "in the morning", "at night", "after lunch", "today"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)} "
            f"{rng.choice(TIMES)} ." for _ in range(n)]


def make_tokenizer(folder: Path):
    """The data side's byte-level BPE (GPT-2 style) trained on synthetic sentences, with the ILM
    special tokens; saved as a folder AutoTokenizer reads."""
    from fairtrial.recipes.ilm.tokenizer import train_bpe

    tok = train_bpe(sentences(300, seed=123), vocab_size=300, min_frequency=1)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    return tok


def ilm_example(tok, text: str, rng: np.random.Generator) -> np.ndarray:
    """Mask one or two words of `text` ILM-style and return the example's token ids."""
    words = text.split(" ")
    n_blanks = int(rng.integers(1, 3))
    pos = sorted(rng.choice(len(words) - 1, size=n_blanks, replace=False).tolist())
    # the data side's convention: a word's leading space goes with the answer
    # ("She<|blank_word|> to school" + " walks"), as GPT-2's BPE attaches it to the word
    ctx = "".join((BLANK_TOKENS["word"] if i in pos else (" " if i else "") + w)
                  for i, w in enumerate(words))
    ids = tok(ctx, add_special_tokens=False)["input_ids"]
    ids.append(tok.convert_tokens_to_ids(START_INFILL))
    for p in pos:
        ids += tok((" " if p else "") + words[p], add_special_tokens=False)["input_ids"]
        ids.append(tok.convert_tokens_to_ids(END_INFILL))
    ids.append(tok.convert_tokens_to_ids(EOS))
    return np.asarray(ids, dtype=np.uint32)


def make_examples(tok, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [ilm_example(tok, s, rng) for s in sentences(n, seed)]


def write_shards(folder: Path, examples: list[np.ndarray], item_ids: list[str] | None = None,
                 extra_meta: dict | None = None) -> Path:
    """Write examples in the examples-stage shard format with the data side's ShardWriter."""
    from fairtrial.recipes.ilm.examples import ShardWriter

    w = ShardWriter(folder)
    for i, e in enumerate(examples):
        w.add(e, item_id=None if item_ids is None else item_ids[i])
    w.close()
    if extra_meta:
        meta = json.loads((folder / "meta.json").read_text())
        meta.update(extra_meta)
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def tiny_model(tok, n_layer: int = 2, n_embd: int = 32, dropout: float = 0.0, seed: int = 0):
    from fairtrial.recipes.ilm.model import ModelParams, build_model

    return build_model(ModelParams(n_layer=n_layer, n_embd=n_embd, n_head=2, n_positions=64,
                                   dropout=dropout), tok, seed=seed)


# ---------------------------------------------------------------------------------------------
# session fixtures: one tiny world (tokenizer, examples, test sets) and one tiny trained model

import pytest  # noqa: E402


@dataclass
class World:
    root: Path
    tok: Any
    tokenizer_dir: Path
    examples_dir: Path   # examples/{train,valid}
    testset_dir: Path    # testset/{A1,B1}
    prepare_dir: Path    # train.jsonl
    train: list
    valid: list


TEST_LEVELS = {"A1": 11, "B1": 12}  # level -> seed of its synthetic sentences


def build_world(root: Path) -> World:
    from fairtrial.scores import eval_set_digest

    tok = make_tokenizer(root / "tokenizer")
    train, valid = make_examples(tok, 240, seed=1), make_examples(tok, 40, seed=2)
    write_shards(root / "examples" / "train", train)
    write_shards(root / "examples" / "valid", valid)
    for level, seed in TEST_LEVELS.items():
        ex = make_examples(tok, 12, seed=seed)
        item_ids = [f"{level}-doc{i // 2}" for i in range(len(ex))]  # two maskings per document
        digest = eval_set_digest(item_ids, [e.tolist() for e in ex])
        write_shards(root / "testset" / level, ex, item_ids, extra_meta={"eval_set_digest": digest})
    (root / "prepare").mkdir()
    with open(root / "prepare" / "train.jsonl", "w") as f:
        for i, s in enumerate(sentences(60, seed=5)):
            f.write(json.dumps({"id": f"t{i}", "level": "A1" if i % 2 else "B1", "text": s}) + "\n")
    return World(root, tok, root / "tokenizer", root / "examples", root / "testset",
                 root / "prepare", train, valid)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("ilm_world"))


@pytest.fixture(scope="session")
def trained(world, tmp_path_factory) -> FakeContext:
    """The context of a finished train stage on the tiny world: .out holds model/ and
    train_log.jsonl, .summary the stage's returned summary."""
    from fairtrial.recipes.ilm.stages import train

    root = tmp_path_factory.mktemp("ilm_trained")
    ctx = FakeContext(
        params=stage_params(RECIPE, "train", {
            "model": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64, "dropout": 0.0},
            "train": {"steps": 60, "micro_batch": 16, "lr": 3e-3, "eval_every": 20,
                      "checkpoint_every": 20, "warmup_frac": 0.0}}),
        out=root / "out", inputs={"examples": world.examples_dir, "tokenizer": world.tokenizer_dir},
        checkpoint_dir=root / "ck", seed=0)
    ctx.summary = train(ctx)
    return ctx
