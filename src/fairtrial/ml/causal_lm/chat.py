"""Chat fine-tuning examples: a rendered prompt plus its completion, the kind of every next-token
target (prompt or completion) and the completion-only objective. Shared by every recipe that
fine-tunes an instruct model on prompt/completion pairs (toolcall, curate)."""

from __future__ import annotations

import numpy as np

from fairtrial.ml.causal_lm.tokens import Objective

PROMPT, COMPLETION = 1, 2
"""Kinds of next-token targets (0 is padding)."""


def assistant_header(tok) -> list[int]:
    """Token ids the chat template adds to open the assistant turn (SmolLM2:
    "<|im_start|>assistant\\n"): every rendered prompt ends with them."""
    msgs = [{"role": "user", "content": "x"}]
    with_gen = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    without = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    if not with_gen.startswith(without) or with_gen == without:
        raise ValueError("the chat template does not open an assistant turn with a suffix "
                         "(add_generation_prompt); the recipe cannot find where completions start")
    return tok(with_gen[len(without):], add_special_tokens=False)["input_ids"]


def example(tok, prompt: str, completion: str) -> tuple[np.ndarray, int]:
    """(token ids of prompt + completion + end of turn, prompt length)."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return np.asarray(p + c, dtype=np.int64), len(p)


def kinds_fn(header: list[int]):
    """Kinds of an example's next-token targets: completion after the last assistant header,
    prompt before (an example cut inside its prompt has no completion targets)."""
    h = np.asarray(header, dtype=np.int64)
    n = len(h)

    def kinds(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        start = None
        for k in range(len(ids) - n, -1, -1):
            if ids[k] == h[0] and np.array_equal(ids[k:k + n], h):
                start = k + n
                break
        out = np.full(len(ids) - 1, PROMPT, dtype=np.int8)
        if start is not None:
            out[max(start - 1, 0):] = COMPLETION  # target t predicts token t + 1
        return out

    return kinds


def completion_objective(pad_id: int, header: list[int], prompt_weight: float = 0.0) -> Objective:
    """The loss of a chat fine-tune: completion tokens weigh 1, prompt tokens `prompt_weight`
    (0: completion-only loss); validation reports the completion's loss."""
    weights = [0.0, 0.0, 0.0]
    weights[PROMPT], weights[COMPLETION] = prompt_weight, 1.0
    return Objective(pad_id=pad_id, kinds=kinds_fn(list(header)), weights=weights,
                     report={"completion": [COMPLETION]})
