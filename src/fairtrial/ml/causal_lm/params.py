"""The training loop's parameters, importable without torch (a study file is validated against
them before any model code loads)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LoopParams(BaseModel):
    """The training loop's knobs (a recipe's train params extend these)."""

    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(None, ge=1)
    """Optimizer steps; None: as many as `epochs` passes over the training examples take."""
    epochs: float = Field(1.0, gt=0)
    micro_batch: int = Field(16, ge=1)
    """Examples per forward pass (the out-of-memory back-off halves it)."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step: the effective batch is micro_batch * grad_accum."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate (the recipe fills in its default)."""
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    """Clip the gradient norm to this; 0 turns clipping off."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    """Linear warm-up over this fraction of the steps."""
    min_lr_frac: float = Field(0.1, ge=0, le=1)
    """Cosine and linear decay end at lr * min_lr_frac."""
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    """Autocast dtype on a GPU; on the CPU training runs in fp32 unless the caller passes
    `train(..., amp_on_cpu=True)` (bf16 autocast is a third faster on a CPU with AMX; see
    docs/ml.md)."""
    batching: Literal["bucketed", "padded"] = "bucketed"
    bucket_pool: int = Field(50, ge=1)
    """Bucketed batching sorts by length within pools of this many optimizer steps."""
    pad_to: int = Field(256, ge=8)
    """Padded batching: every example is padded (or cut) to this length."""
    eval_every: int = Field(100, ge=0)
    """Evaluate on the valid split every this many steps (0: only at the end)."""
    eval_examples: int | None = Field(1000, ge=1)
    """Validate on the first this many valid examples (None: all)."""
    checkpoint_every: int = Field(100, ge=1)
    select: Literal["best", "last"] = "best"
    """Which weights the final model gets: the best validation result, or the last step."""


class LoraParams(BaseModel):
    """LoRA's knobs as a study file gives them (a recipe's train params mix them in; the ML
    layer's `lora.LoraSpec` and `lora.lora_for_training` take them)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] | None = None
    """LoRA target modules (last name component); None: the ML layer's default (q/k/v/o
    projections)."""
    upper_layers: int | None = Field(None, ge=1)
    """Train the adapter of the top this many decoder layers only (cuts the backward pass)."""


class ModelChoice(BaseModel):
    """The base model a recipe fine-tunes, as a study file names it: `model = "smollm2-135m"` or a
    table `{name = ..., allow_quantized = ...}`."""

    model_config = ConfigDict(extra="forbid")

    name: str = "smollm2-135m"
    """A short name (smollm2-135m, the offline CPU model), a hub id or a local folder."""
    allow_quantized: bool = False
    """Train (and merge) on a quantised base anyway: refused by default, because the adapter learns
    against rounded weights and a merge re-quantises; flagged in the report when allowed."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v
