"""The ILM tokenizer: GPT-2's (from a local folder or the hub) or a byte-level BPE trained on the
training split, plus the ILM special tokens.

One tokenizer serves every arm of a study (it is trained on the training split of all levels), so
perplexities of different arms count the same tokens. It is saved with `save_pretrained`, so
`AutoTokenizer.from_pretrained(folder)` loads it anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# The blank tokens, one per span type of the hierarchical masker (Donahue et al. 2020, sec. 3).
BLANK_TOKENS = {
    "word": "<|blank_word|>",
    "ngram": "<|blank_ngram|>",
    "sentence": "<|blank_sentence|>",
    "paragraph": "<|blank_paragraph|>",
    "document": "<|blank_document|>",
}
START_INFILL = "<|start_infill|>"
END_INFILL = "<|end_infill|>"
EOS = "<|endoftext|>"  # GPT-2's end of text; also the pad token
SPECIAL_TOKENS = [*BLANK_TOKENS.values(), START_INFILL, END_INFILL]

DEFAULT_VOCAB_SIZE = 8192
DEFAULT_MIN_FREQUENCY = 2


def add_ilm_tokens(tok):
    """Add the ILM special tokens and set eos = pad = <|endoftext|>. Returns the tokenizer."""
    if tok.eos_token is None or tok.eos_token != EOS:
        if EOS not in tok.get_vocab():
            tok.add_special_tokens({"eos_token": EOS})
        tok.eos_token = EOS
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tok.pad_token = EOS
    return tok


def load_pretrained(name_or_path: str):
    """A pretrained tokenizer by any model name fairtrial.ml takes (a hub name such as "gpt2", a
    local folder, a GGUF file or a short name: the one hub-or-folder rule,
    fairtrial.ml.causal_lm.model.load_tokenizer), with the ILM tokens added.

    Raises ValueError (ModelError, one line naming `tokenizer.name`) when it cannot be loaded."""
    from fairtrial.ml.causal_lm.model import load_tokenizer

    return add_ilm_tokens(load_tokenizer(name_or_path, what="tokenizer.name"))


def train_bpe(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE,
              min_frequency: int = DEFAULT_MIN_FREQUENCY):
    """Train a GPT-2-style byte-level BPE on `texts` (the tokenizers library; deterministic for a
    given input order) and wrap it as a transformers fast tokenizer with the ILM tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=[EOS, *SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS,
                                  unk_token=EOS, pad_token=EOS)
    return add_ilm_tokens(tok)


def special_ids(tok) -> dict[str, int]:
    """Token ids of the ILM specials: keys word, ngram, sentence, paragraph, document,
    start_infill, end_infill, eos."""
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in BLANK_TOKENS.items()}
    ids["start_infill"] = tok.convert_tokens_to_ids(START_INFILL)
    ids["end_infill"] = tok.convert_tokens_to_ids(END_INFILL)
    ids["eos"] = tok.convert_tokens_to_ids(EOS)
    unk = getattr(tok, "unk_token_id", None)
    for k, v in ids.items():
        if v is None or (v == unk and k != "eos"):
            raise ValueError(f"tokenizer lacks the ILM token for {k}; build it with add_ilm_tokens")
    return ids


def load(folder: str | Path):
    """Load a tokenizer folder written by the tokenizer stage."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))
