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

Speed. Prompts are batched in order of their token length (the results come back in the given
order): a batch pads to its longest prompt, and on a CPU the prompt's forward pass (compute-bound)
dominates, so padding a 100-token prompt to 200 tokens costs as much as a second prompt.
Prompts of a batch usually start alike (the chat template's system turn, a format prefix, a task
instruction: 40-60% of a toolcall prompt); the shared tokens are run once and their KV cache
copied to every row (`share_prefix`), the rows' own tokens follow, left-padded after it (the
attention mask hides the padding; positions are counted from the mask, so each row's positions are
those of its unpadded prompt). Decoding runs under `torch.inference_mode` with the KV cache on;
stop strings are checked by
transformers' `StopStringCriteria` (vectorised over the batch, no decoding per step).

Sampling is seeded per batch (`seed + batch index`) inside a forked RNG, so the same prompts,
batch size and seed give the same texts, and the caller's RNG streams are left alone. A row's
text depends on its batch neighbours only through padding, which the attention mask hides (up to
floating-point rounding: a padded batch sums in another order, which can flip a near-tie of
greedy decoding).
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
             stop: Sequence[str] = (), batch_size: int = 8,
             share_prefix: bool = True) -> list[str]:
    """The completion of each prompt (new text only, special tokens dropped, cut before the first
    stop string). `temperature` 0 is greedy; above 0 samples with `top_p`. `share_prefix`: run the
    tokens every prompt of a batch starts with once (see the module doc)."""
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
    # the chat template already holds the special tokens; plain text gets the usual ones
    enc = [tokenizer(t, add_special_tokens=not chat)["input_ids"] for t, chat in texts]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))  # stable: ties keep their order
    out: list[str] = [""] * len(enc)
    side = tokenizer.padding_side
    was_training = model.training
    tokenizer.padding_side = "left"
    model.eval()
    try:
        for b, start in enumerate(range(0, len(order), batch_size)):
            part = order[start:start + batch_size]
            rows = [enc[i] for i in part]
            k = _shared(rows) if share_prefix and len(rows) > 1 else 0
            batch = tokenizer.pad({"input_ids": [r[k:] for r in rows]}, padding=True,
                                  return_tensors="pt")
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                    torch.inference_mode():
                extra = {}
                if k:
                    prefix = torch.tensor([rows[0][:k]], device=device)
                    first = model(input_ids=prefix, use_cache=True)
                    name = "cache" if "cache" in first else "past_key_values"  # transformers 5
                    cache = first[name]
                    cache.batch_repeat_interleave(len(rows))
                    ids = torch.cat([prefix.expand(len(rows), k), ids], dim=1)
                    mask = torch.cat([torch.ones_like(prefix).expand(len(rows), k), mask], dim=1)
                    extra[name] = cache
                torch.manual_seed(seed + b)
                gen = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                     tokenizer=tokenizer if stop else None, **extra)
            for i, row in zip(part, gen[:, ids.shape[1]:]):
                out[i] = _cut(tokenizer.decode(row, skip_special_tokens=True), stop)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


MIN_SHARED = 8
"""Fewer shared tokens than this are not worth a separate forward pass."""


def _shared(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all rows share, leaving every row at least one of its own (the
    last prompt token's logits start the generation); 0 when under MIN_SHARED."""
    k, limit = 0, min(len(r) for r in rows) - 1
    first = rows[0]
    while k < limit and all(r[k] == first[k] for r in rows):
        k += 1
    return k if k >= MIN_SHARED else 0


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
