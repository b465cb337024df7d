"""The model-based quality score: instruction-following difficulty (IFD; Li et al., 2023, "From
Quantity to Quality"): the response's mean per-token loss under a causal LM with the prompt,
divided by its mean loss without it.

    IFD = loss(response | chat template with the prompt) / loss(response | chat template with an
          empty user turn)

Near 1 or above: the prompt does not help predict the response (a response unrelated to its
instruction, or one the model finds no easier with it); the paper drops samples above 1. Both
conditions go through the model's chat template, so they differ only in the prompt's text. The
response and the prompt are each cut to `max_tokens` (the prompt keeps its end, next to the
response). A response with no tokens has no IFD (NaN; no rule removes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _template(tokenizer, content: str) -> list[int]:
    out = tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                        add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def ifd_scores(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], *,
               max_tokens: int = 256, batch_size: int = 8, device: str = "cpu",
               progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loss with the prompt, loss without it, IFD) per sample, mean nats per response token."""
    import torch

    from fairtrial.ml.causal_lm.tokens import token_nll

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    empty = _template(tokenizer, "")
    seqs: list[tuple[list[int], int]] = []   # (token ids, index of the first response token)
    for p, r in zip(prompts, responses):
        resp = list(tokenizer(r, add_special_tokens=False)["input_ids"])[:max_tokens]
        head = _template(tokenizer, p)
        head = head[-max_tokens:] if len(head) > max_tokens else head
        seqs += [(head + resp, len(head)), (empty + resp, len(empty))]
    losses = np.full(len(seqs), np.nan)
    order = np.argsort([len(s) for s, _ in seqs], kind="stable")  # little padding per batch
    was_training = model.training
    model.to(device).eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(seqs[i][0]) for i in idx)
            x = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            keep = torch.zeros((len(idx), width - 1), dtype=torch.bool)
            for row, i in enumerate(idx):
                s, b = seqs[i]
                x[row, :len(s)] = torch.tensor(s, dtype=torch.long)
                mask[row, :len(s)] = 1
                keep[row, b - 1:len(s) - 1] = True   # targets b..len-1, predicted at b-1..len-2
            nll = token_nll(model, x.to(device), mask.to(device), keep=keep).cpu()
            for row, i in enumerate(idx):
                if keep[row].any():
                    losses[i] = float(nll[row][keep[row]].double().mean())
            if progress is not None:
                progress(start + len(idx))
    model.train(was_training)
    cond, uncond = losses[0::2], losses[1::2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return cond, uncond, cond / uncond
