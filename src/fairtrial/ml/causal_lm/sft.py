"""LoRA supervised fine-tuning of a chat model on prompt/completion examples, written once for
every recipe that tunes or distils an instruct model (toolcall's `train`, curate's `train`).

Reads top to bottom: refuse a quantised base unless allowed, wrap the base with a trainable
adapter, train with the completion-only objective (exact resume from the checkpoint folder), save
the adapter and the loss history. The recipe's stage renders its own examples and writes its own
summary file around it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fairtrial.ml.causal_lm.model import is_quantized


def check_base(model, name: str, allow_key: str, allow: bool) -> bool:
    """Whether the base's weights are quantised. A quantised base is refused (ValueError) unless
    `allow`: LoRA on it trains against rounded weights and its adapter cannot be merged cleanly.
    `allow_key` is the param that allows it (e.g. "model.allow_quantized"), named in the error."""
    quantized = is_quantized(model)
    if quantized and not allow:
        raise ValueError(f"{name} is quantised: LoRA on a quantised base trains against rounded "
                         "weights and cannot be merged cleanly; use a full-precision base, or set "
                         f"{allow_key} = true (flagged in the report)")
    return quantized


def lora_sft(base, tok, header: Sequence[int], train_ex: list[np.ndarray],
             valid_ex: list[np.ndarray], params, *, seed: int, max_len: int, out: Path,
             device: str = "cpu", checkpoint_dir: Path | None = None,
             config: Mapping[str, Any] | None = None,
             progress: Callable[..., None] | None = None, log=None,
             heartbeat: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train a LoRA adapter on `base` (in place) and write `out/adapter/` and
    `out/train_log.jsonl`. `params` is a LoRA + loop params model (`LoraParams`, `LoopParams`,
    and `prompt_loss_weight`: 0 gives the completion-only loss). `header` is the chat template's
    assistant header, where completions start. Without validation examples the first training
    example validates (so the loop's selection has something to read). Returns the adapter's
    size and the first and final training loss."""
    from fairtrial.ml.causal_lm.chat import completion_objective
    from fairtrial.ml.causal_lm.lora import lora_for_training, save_adapter
    from fairtrial.ml.causal_lm.model import parameter_counts
    from fairtrial.ml.causal_lm.train import train as train_loop

    peft_model, layers = lora_for_training(base, params, seed=seed)
    total, trainable = parameter_counts(peft_model)
    objective = completion_objective(tok.pad_token_id, list(header), params.prompt_loss_weight)
    if log is not None:
        log.info("train: %d examples, %d of %d parameters trainable", len(train_ex), trainable,
                 total)
    t0 = time.perf_counter()
    result = train_loop(peft_model, train_ex, valid_ex or train_ex[:1], params, objective,
                        seed=seed, max_len=max_len, device=device, checkpoint_dir=checkpoint_dir,
                        config=config, progress=progress, log=log, heartbeat=heartbeat)
    seconds = time.perf_counter() - t0
    out = Path(out)
    save_adapter(peft_model.to("cpu"), out / "adapter")
    history = result.get("history") or []
    with open(out / "train_log.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(h) + "\n" for h in history)
    return {"trainable": trainable, "total": total, "layers": layers,
            "seconds": round(seconds, 1),
            "first_loss": (history or [{}])[0].get("loss"),
            "final_loss": (history or [{}])[-1].get("loss")}
