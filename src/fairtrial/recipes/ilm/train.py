"""ILM training: what an ILM example is, how its targets weigh, and the call of the shared loop.

An example is `masked context <|start_infill|> answer1 <|end_infill|> answer2 <|end_infill|> ...
<|endoftext|>` (token ids, from the examples stage). The model is trained as a plain causal LM on the
whole sequence; the loss weights context targets and infill targets separately (the paper trains on
both; `infill_only` keeps only the infill part).

The loop itself (batching, loss normalisation, AMP, exact resume, best-checkpoint selection) is
fairtrial.ml.causal_lm.train, shared with every causal-LM recipe; this module gives it the ILM
target kinds and their loss weights (`objective`) and selects the weights with the best
validation infill loss. docs/recipes/ilm-model.md describes the choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# the params (and their learning-rate defaults) are declared with all others in params.py
from fairtrial.recipes.ilm.params import TrainParams

# ---------------------------------------------------------------------------------------------
# target kinds: what each next-token target is, shared with evaluate.py

PAD, CONTEXT, START, INFILL, END, EOS_T = 0, 1, 2, 3, 4, 5
"""Kind of target position t (the token at t+1): padding; a context token; the <|start_infill|>
token; an infill text token; an <|end_infill|>; the closing <|endoftext|>."""


def target_kinds(ex: np.ndarray, ids: dict[str, int]) -> np.ndarray:
    """Kinds of the len(ex)-1 next-token targets of one example."""
    tgt = ex[1:]
    kinds = np.full(len(tgt), CONTEXT, np.int8)
    where = np.flatnonzero(ex == ids["start_infill"])
    if len(where):
        s = int(where[0])  # index of <|start_infill|> in ex; target j-1 predicts ex[j]
        kinds[s - 1] = START if s >= 1 else CONTEXT
        after = np.arange(len(tgt)) >= s
        kinds[after] = INFILL
        kinds[after & (tgt == ids["end_infill"])] = END
        kinds[after & (tgt == ids["eos"])] = EOS_T
    return kinds


def objective(ids: dict[str, int], params: TrainParams | None = None):
    """The ILM objective for the shared loop: target kinds, a loss weight per kind (context and
    <|start_infill|> weigh `context_weight`; answers, <|end_infill|> and <|endoftext|> weigh
    `infill_weight`), right padding with <|endoftext|>, and the infill NLL reported in validation
    (`valid_infill_loss`, which selects the best weights)."""
    from functools import partial

    from fairtrial.ml.causal_lm.tokens import Objective

    return Objective(pad_id=ids["eos"], kinds=partial(target_kinds, ids=ids),
                     weights=kind_weights(params or TrainParams()),
                     report={"infill": (INFILL, END, EOS_T)})


def kind_weights(params: TrainParams) -> tuple[float, ...]:
    """The loss weight of each target kind (indexed by PAD, CONTEXT, START, INFILL, END, EOS_T)."""
    cw, iw = params.effective_context_weight, params.infill_weight
    return (0.0, cw, cw, iw, iw, iw)


def collate(examples: Sequence[np.ndarray], ids: dict[str, int], length: int | None = None):
    """Right-padded (input_ids, attention_mask, kinds) tensors of ILM examples; `length` pads
    (or cuts) to a fixed width, else to the longest example."""
    from fairtrial.ml.causal_lm.tokens import collate as collate_tokens

    return collate_tokens(examples, objective(ids), length)


def loss_weights(kinds, params: TrainParams):
    """The loss weight of every target of a collated batch's `kinds`."""
    from fairtrial.ml.causal_lm.tokens import loss_weights as weights_of

    return weights_of(kinds, kind_weights(params))


# ---------------------------------------------------------------------------------------------
# training


def train(model, train_data, valid_data, params: TrainParams, *, ids: dict[str, int], seed: int,
          device: str = "cpu", checkpoint_dir: Path | None = None,
          resolved: dict[str, Any] | None = None,
          progress: Callable[..., None] | None = None, log=None,
          heartbeat: Callable[[], None] | None = None,
          max_len: int | None = None, amp_on_cpu: bool = False) -> dict[str, Any]:
    """Train an ILM in place with the shared loop (fairtrial.ml.causal_lm.train.train: resumes
    from `checkpoint_dir/last.pt`, leaves the best or last weights in the model, returns the
    history and a summary). `resolved` is the stage's resolved config, saved in every checkpoint.

    `params.precision` applies on a GPU; `amp_on_cpu=True` applies it on the CPU too (CPU autocast
    is slow, so studies never ask for it; the tests use it to run the mixed-precision path, loss
    scaling and its checkpointed state included, on a machine without a GPU)."""
    from fairtrial.ml.causal_lm import train as loop
    from fairtrial.ml.causal_lm.model import max_positions

    params = params.resolved(pretrained=False)  # a library caller may leave lr unset
    return loop.train(model, train_data, valid_data, params, objective(ids, params), seed=seed,
                      max_len=max_len or max_positions(model), select_on="valid_infill_loss",
                      device=device, checkpoint_dir=checkpoint_dir, config=resolved,
                      progress=progress, log=log, heartbeat=heartbeat, amp_on_cpu=amp_on_cpu)
