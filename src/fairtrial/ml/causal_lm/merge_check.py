"""Check a LoRA merge: the merged model must compute what base + adapter computed.

    before = next_token_logprobs(peft_model, tok, held_out_prompts)   # before merging
    merged = lora.merge(peft_model)                                   # modifies the base in place
    result = compare(before, next_token_logprobs(merged, tok, held_out_prompts))
    result.passed, result.top1_agreement, result.mean_kl

    merged, result = merge_and_check(peft_model, tok, held_out_prompts)  # the same, in one call

The case it exists for: a study trained a LoRA adapter on a 4-bit base and merged it into that base;
the merge re-quantised the weights, rounded most of the update away, and the merged model was worse
than the adapter it came from, unnoticed for weeks. A clean merge in float32 reproduces the
adapter's distributions to rounding error (KL ~1e-10); a merge into rounded weights or with a wrong
scale does not.

What is compared: the next-token distribution after each of at least `min_prompts` held-out prompts
(64 by default; the last position of each prompt, padded on the left with position ids counted
from each prompt's first token, and only the last position's logits computed), as
log-probabilities over the whole vocabulary:
- **top-1 agreement**: the share of prompts whose most likely next token is the same;
- **mean KL**: the mean over prompts of KL(base + adapter || merged), in nats.

- **relative KL** (when the base alone is measured, as `merge_and_check` does): the merge's mean KL
  divided by the mean KL(base + adapter || base), i.e. the share of the adapter's own change that
  the merge got wrong. A merge that lost the whole update scores about 1.

A merge passes when top-1 agreement >= `min_top1_agreement` (default 0.98: one prompt in 64 may
flip between two near-equal tokens), mean KL <= `max_mean_kl` (default 0.01 nats) and relative KL
<= `max_relative_kl` (default 0.1). The relative bound is what catches a small adapter merged into
rounded weights: on SmolLM2-135M with a small random LoRA update (mean KL 0.0023 from the base),
a merge into weights rounded to 8 bits has mean KL 0.0043 and top-1 agreement 0.984, inside both
absolute bounds, but 1.85 times the adapter's own change (tests/ml/test_merge_check.py, the
FAIRTRIAL_SMOLLM2_MERGE measurement). A clean float32 merge: mean KL about 5e-8.

Merging into a quantised base is refused (`lora.merge`, `QuantizedBaseError`) unless `force=True`,
which merges anyway (peft's own merge, re-quantising) and marks the result `forced`, so the report
flags it; the check then says what the merge cost.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from fairtrial.ml.causal_lm.generate import Prompt, render
from fairtrial.ml.causal_lm.lora import QuantizedBaseError, merge
from fairtrial.ml.causal_lm.model import is_quantized
from fairtrial.ml.hub import ModelError

MIN_PROMPTS = 64
MIN_TOP1_AGREEMENT = 0.98
MAX_MEAN_KL = 0.01
MAX_RELATIVE_KL = 0.1


@dataclass(frozen=True)
class MergeCheck:
    n_prompts: int
    top1_agreement: float
    mean_kl: float
    max_kl: float
    min_top1_agreement: float
    max_mean_kl: float
    forced: bool = False
    """The merge went into a quantised base because it was forced (always flagged)."""
    adapter_mean_kl: float | None = None
    """Mean KL(base + adapter || base alone): how far the adapter moves the base (None: the base
    alone was not measured). A merge that lost the whole update would score about this."""
    max_relative_kl: float | None = MAX_RELATIVE_KL
    """With `adapter_mean_kl`: the merge's mean KL may be at most this share of it."""

    @property
    def relative_kl(self) -> float | None:
        """mean_kl / adapter_mean_kl: the share of the adapter's change the merge got wrong."""
        if self.adapter_mean_kl is None:
            return None
        return self.mean_kl / self.adapter_mean_kl if self.adapter_mean_kl > 0 else float("inf")

    @property
    def passed(self) -> bool:
        relative_ok = (self.relative_kl is None or self.max_relative_kl is None
                       or self.relative_kl <= self.max_relative_kl)
        return (self.top1_agreement >= self.min_top1_agreement
                and self.mean_kl <= self.max_mean_kl and relative_ok)

    @property
    def message(self) -> str:
        """One line for the report and for a failed stage."""
        verdict = "passed" if self.passed else "FAILED"
        forced = "; merged into a QUANTISED base (forced)" if self.forced else ""
        effect = ""
        if self.adapter_mean_kl is not None:
            effect = (f"; the adapter moves the base by mean KL {self.adapter_mean_kl:.3g}, the "
                      f"merge's error is {self.relative_kl:.3g} of that")
            if self.max_relative_kl is not None:
                effect += f" (max {self.max_relative_kl})"
        return (f"merge check {verdict} on {self.n_prompts} held-out prompts: top-1 agreement "
                f"{self.top1_agreement:.4f} (min {self.min_top1_agreement}), mean KL "
                f"{self.mean_kl:.3g} nats (max {self.max_mean_kl}), worst KL {self.max_kl:.3g}"
                f"{effect}{forced}")

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def next_token_logprobs(model, tokenizer, prompts: Sequence[Prompt | Sequence[int]], *,
                        batch_size: int = 8, min_prompts: int = MIN_PROMPTS) -> torch.Tensor:
    """[n_prompts, vocab] float32 log-probabilities of the token after each prompt. A prompt is
    text, chat messages (rendered with the chat template, assistant turn opened) or token ids."""
    if len(prompts) < min_prompts:
        raise ModelError(f"merge check: {len(prompts)} held-out prompts given, at least "
                         f"{min_prompts} are needed")
    ids: list[list[int]] = []
    for p in prompts:
        if isinstance(p, str) or (p and isinstance(p[0], dict)):
            text, chat = render(tokenizer, p)
            ids.append(tokenizer(text, add_special_tokens=not chat)["input_ids"])
        else:
            ids.append([int(t) for t in p])
    if any(not x for x in ids):
        raise ModelError("merge check: a held-out prompt is empty")
    device = next(model.parameters()).device
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # only the last position's logits: the full [batch, length, vocab] tensor is most of the cost
    keep = ({"logits_to_keep": 1}
            if "logits_to_keep" in inspect.signature(base.forward).parameters else {})
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for s in range(0, len(ids), batch_size):
                part = ids[s:s + batch_size]
                width = max(map(len, part))
                x = torch.zeros(len(part), width, dtype=torch.long)
                mask = torch.zeros(len(part), width, dtype=torch.long)
                for i, row in enumerate(part):  # left padding, positions counted from each
                    x[i, width - len(row):] = torch.tensor(row)  # row's first real token
                    mask[i, width - len(row):] = 1
                pos = (mask.cumsum(-1) - 1).clamp_min(0)
                logits = model(input_ids=x.to(device), attention_mask=mask.to(device),
                               position_ids=pos.to(device), **keep).logits
                out.append(torch.log_softmax(logits[:, -1].float(), dim=-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) per row of two log-probability tables. torch's kl_div takes (log Q, log P)."""
    return torch.nn.functional.kl_div(q, p, log_target=True, reduction="none").sum(-1).clamp_min(0)


def compare(reference: torch.Tensor, merged: torch.Tensor, *, base: torch.Tensor | None = None,
            min_top1_agreement: float = MIN_TOP1_AGREEMENT, max_mean_kl: float = MAX_MEAN_KL,
            max_relative_kl: float | None = MAX_RELATIVE_KL, forced: bool = False) -> MergeCheck:
    """Top-1 agreement and KL(reference || merged) of two [n, vocab] log-probability tables;
    with `base` (the base model alone), also how far the adapter moved it, and the merge's error
    relative to that."""
    shapes = [t.shape for t in (reference, merged, base) if t is not None]
    if len(set(shapes)) != 1:
        raise ModelError(f"merge check: distributions of shapes {[tuple(s) for s in shapes]} "
                         f"(different prompts or vocabularies)")
    if not 0 <= min_top1_agreement <= 1 or max_mean_kl < 0 or (max_relative_kl or 0) < 0:
        raise ModelError("merge check: min_top1_agreement must be in [0, 1], max_mean_kl and "
                         "max_relative_kl >= 0")
    kl = _kl(reference, merged)
    top1 = (reference.argmax(-1) == merged.argmax(-1)).float().mean()
    return MergeCheck(n_prompts=reference.shape[0], top1_agreement=float(top1),
                      mean_kl=float(kl.mean()), max_kl=float(kl.max()),
                      min_top1_agreement=min_top1_agreement, max_mean_kl=max_mean_kl,
                      forced=forced, max_relative_kl=max_relative_kl,
                      adapter_mean_kl=None if base is None else float(_kl(reference, base).mean()))


def merge_and_check(peft_model, tokenizer, prompts: Sequence[Prompt | Sequence[int]], *,
                    min_top1_agreement: float = MIN_TOP1_AGREEMENT,
                    max_mean_kl: float = MAX_MEAN_KL,
                    max_relative_kl: float | None = MAX_RELATIVE_KL, force: bool = False,
                    batch_size: int = 8, min_prompts: int = MIN_PROMPTS):
    """Merge the adapter (refusing a quantised base unless `force`) and check the merge.
    Returns (merged model, MergeCheck); whether a failed check fails the stage is the caller's
    rule (the study's `merge.allow_failed_check`)."""
    quantized = is_quantized(peft_model)
    if quantized and not force:
        merge(peft_model)  # raises QuantizedBaseError with the full explanation
        raise QuantizedBaseError("refusing to merge into a quantised base")  # pragma: no cover
    before = next_token_logprobs(peft_model, tokenizer, prompts, batch_size=batch_size,
                                 min_prompts=min_prompts)
    with peft_model.disable_adapter():  # the base alone: what a lost update would look like
        base = next_token_logprobs(peft_model, tokenizer, prompts, batch_size=batch_size,
                                   min_prompts=min_prompts)
    merged = peft_model.merge_and_unload() if quantized else merge(peft_model)
    after = next_token_logprobs(merged, tokenizer, prompts, batch_size=batch_size,
                                min_prompts=min_prompts)
    return merged, compare(before, after, base=base, min_top1_agreement=min_top1_agreement,
                           max_mean_kl=max_mean_kl, max_relative_kl=max_relative_kl,
                           forced=quantized)
