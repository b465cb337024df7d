"""A tiny chat model for the stage tests: a byte-level BPE trained on a few prompts, a ChatML
template, a 2-layer Llama of hidden size 32 (seconds to build, train and decode on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
SLM = DATA / "slm-swap"
HERMES = DATA / "hermes-fc"

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_model(folder: Path, *, template: bool = True) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from fairtrial.ml.causal_lm.model import build_causal_lm, save_model

    texts = []
    for track in ("toolcall", "structured"):
        for line in (SLM / track / "train.jsonl").read_text().splitlines()[:60]:
            row = json.loads(line)
            texts += [row["prompt"], row["completion"]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                  pad_token="<|pad|>", bos_token=None)
    if template:
        tok.chat_template = CHATML
    model = build_causal_lm({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                             "num_hidden_layers": 2, "num_attention_heads": 2,
                             "num_key_value_heads": 2, "vocab_size": len(tok),
                             "max_position_embeddings": 2048, "eos_token_id": tok.eos_token_id,
                             "pad_token_id": tok.pad_token_id}, seed=0)
    return save_model(model, tok, folder)
