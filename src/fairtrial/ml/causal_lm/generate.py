"""Batched generation: left padding, the chat template, greedy or seeded sampling, stop strings.

    generate(model, tok, [[{"role": "user", "content": "What is 2 + 2?"}], "Once upon a time"],
             max_new_tokens=32, temperature=0.0, stop=["\\n\\n"])

A prompt is a list of chat messages (rendered with `tokenizer.apply_chat_template`, with the
assistant turn opened) or a plain string (used as it is). Prompts are padded on the left, so
every row's last prompt token sits at the same position and the new tokens follow it directly.

Only what is passed here decides the output: the generation settings start from a blank
`GenerationConfig` (eos, pad and bos ids copied from the model and tokenizer), not from the
model's saved `generation_config.json`, whose sampling defaults (a hub model's temperature,
repetition penalty) would otherwise change results without appearing in any study file.

Sampling is seeded per batch (`seed + batch index`) inside a forked RNG, so the same prompts,
batch size and seed give the same texts, and the caller's RNG streams are left alone. A row's
text depends on its batch neighbours only through padding, which the attention mask hides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

Prompt = str | Sequence[Mapping[str, str]]


def render(tokenizer, prompt: Prompt) -> tuple[str, bool]:
    """(prompt text, whether it came from the chat template)."""
    if isinstance(prompt, str):
        return prompt, False
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("chat messages were given but the tokenizer has no chat template; "
                         "give plain-text prompts for a base model")
    text = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return text, True


def generate(model, tokenizer, prompts: Sequence[Prompt], *, max_new_tokens: int = 64,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             stop: Sequence[str] = (), batch_size: int = 8) -> list[str]:
    """The completion of each prompt (new text only, special tokens dropped, cut before the first
    stop string). `temperature` 0 is greedy; above 0 samples with `top_p`."""
    from transformers import GenerationConfig

    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("generate: temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1 and "
                         "batch_size >= 1 are required")
    stop = [s for s in stop if s]
    device = next(model.parameters()).device
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        top_p=top_p if temperature > 0 else None, top_k=None,
        eos_token_id=eos, pad_token_id=pad,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        stop_strings=stop or None)
    texts = [render(tokenizer, p) for p in prompts]
    out: list[str] = []
    side = tokenizer.padding_side
    was_training = model.training
    tokenizer.padding_side = "left"
    model.eval()
    try:
        for b, start in enumerate(range(0, len(texts), batch_size)):
            part = texts[start:start + batch_size]
            # the chat template already holds the special tokens; plain text gets the usual ones
            enc = [tokenizer(t, add_special_tokens=not chat)["input_ids"] for t, chat in part]
            batch = tokenizer.pad({"input_ids": enc}, padding=True, return_tensors="pt")
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                    torch.no_grad():
                torch.manual_seed(seed + b)
                gen = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                     tokenizer=tokenizer if stop else None)
            for row in gen[:, ids.shape[1]:]:
                out.append(_cut(tokenizer.decode(row, skip_special_tokens=True), stop))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), model.config):
        e = getattr(source, "eos_token_id", None) if source is not None else None
        ids += [e] if isinstance(e, int) else list(e or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise ValueError("generate: neither the model nor the tokenizer names an eos token")
    return ids


def _cut(text: str, stop: Sequence[str]) -> str:
    """The text before the first stop string (generation stops on the token that completes it,
    which may carry characters past it)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]
