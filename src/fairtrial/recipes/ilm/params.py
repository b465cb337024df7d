"""The `ilm` recipe's params (`[params]` of a study file), validated once at the boundary.

Every param of the recipe is declared here, with its default: data, split, tokenizer, masking,
testset, train_level (the data stages), model, train, eval (the model stages). A string is
accepted where a table has one obvious field: `data = "cefr-sp"`, `tokenizer = "gpt2"`.
This module imports no torch: a study file is validated before any model code loads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fairtrial.data.readers import CEFR_LEVELS, ONESTOP_LEVELS
from fairtrial.ml.causal_lm.params import LoopParams
from fairtrial.recipes.ilm.masking import KINDS

DATA_FORMATS = ("auto", "cefr-sp", "onestopenglish", "efcamdat", "table", "text-folder")


class DataParams(BaseModel):
    """Where the documents come from and how to read them."""
    model_config = ConfigDict(extra="forbid")

    source: str
    """A data set name (`fairtrial data list`) or a path to a file or folder."""
    format: Literal["auto", "cefr-sp", "onestopenglish", "efcamdat", "table", "text-folder"] = "auto"
    """auto: from the data set name, else from the path (folder with Ele-Txt: onestopenglish, a CSV
    with writing_id and cefr_level: efcamdat, other .csv/.tsv/.jsonl: table, other folder: text-folder)."""
    level_rule: Literal["A", "B", "min", "max", "mean"] = "mean"
    """CEFR-SP: how the two annotators' levels combine."""
    text_column: str = "text"
    level_column: str = "level"
    strata_columns: list[str] = []
    id_column: str | None = None
    level_pattern: str = r"^(?P<level>[^/]+)/"
    levels: list[str] | None = None
    """The closed set of level values (table and text-folder formats); other values are errors."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"source": v} if isinstance(v, str) else v


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: float = Field(0.8, ge=0, le=1)
    valid: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    seed: int = 0
    """The split is a fixed property of the study, not of the replicate: this seed, not the arm's."""

    @model_validator(mode="after")
    def _sum_to_one(self):
        total = self.train + self.valid + self.test
        if abs(total - 1) > 1e-6:
            raise ValueError(f"split fractions train + valid + test = {total:g}; they must sum to 1")
        return self


class TokenizerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "bpe"
    """"bpe": train a byte-level BPE on the training split; else a local folder or hub name (gpt2)."""
    vocab_size: int = Field(8192, ge=300)
    min_frequency: int = Field(2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class MaskingParams(BaseModel):
    """How training examples are masked (Donahue et al. 2020: hierarchical, p = 0.03, 16 masks)."""
    model_config = ConfigDict(extra="forbid")

    kind: Literal["hierarchical", "document", "paragraph", "sentence", "ngram", "word"] = "hierarchical"
    p: float = Field(0.03, gt=0, le=1)
    ngram_max: int = Field(8, ge=1)
    n_masks: int = Field(16, ge=1)
    max_retries: int = Field(8, ge=0)
    """Extra draws per wanted mask when a draw duplicates an earlier mask or has too few spans."""
    min_spans: int = Field(1, ge=0)
    """A mask with fewer spans is redrawn (a mask with no blank teaches no infilling)."""
    seed: int = 0
    max_doc_tokens: int | None = Field(None, ge=16)
    """Documents longer than this many tokens are cut into consecutive chunks at sentence
    boundaries before masking (ids get "#k"); None keeps documents whole."""
    workers: int = Field(2, ge=1)


class TestsetParams(MaskingParams):
    """The fixed test set: the same for every arm, so it has its own masking settings (an arm that
    changes `masking` must not change what it is scored on). One mask per test document by default."""
    n_masks: int = Field(1, ge=1)
    seed: int = 1234
    max_docs: int | None = Field(None, ge=1)
    """Use at most this many test documents per level (the first ones in split order)."""


# ----------------------------------------------------------------------------- model side

class ModelParams(BaseModel):
    """`[params.model]` of an ilm study."""

    model_config = ConfigDict(extra="forbid")

    pretrained: str | None = None
    """Hub name ("gpt2") or local folder of a pretrained causal LM; None builds from the sizes below."""
    n_layer: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=8)
    n_head: int = Field(4, ge=1)
    n_positions: int = Field(256, ge=16)
    """Longest example the model can read (context + all infills)."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Residual, embedding and attention dropout of a from-scratch model (pretrained: kept as saved)."""
    memory_gb: float | None = Field(None, gt=0)
    """Memory the train stage may use; None: what the device has free. Checked before loading."""

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelParams":
        if self.pretrained is None and self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be a multiple of "
                             f"model.n_head ({self.n_head})")
        return self


LR_FROM_SCRATCH = 2e-3
"""Peak learning rate of a fresh model when `train.lr` is not given. Measured on CEFR-SP (2-layer,
n_embd 64, 150 steps of 32): 5e-4 ends level with the unigram baseline, 2e-3 well below it."""
LR_PRETRAINED = 1e-4
"""Peak learning rate when fine-tuning a pretrained model and `train.lr` is not given."""


class TrainParams(LoopParams):
    """`[params.train]` of an ilm study: the shared loop's params (fairtrial.ml.causal_lm.params:
    steps, batch, optimizer, schedule, precision, batching, validation, checkpoints) and the loss
    weights of ILM targets."""

    context_weight: float = Field(1.0, ge=0)
    infill_weight: float = Field(1.0, ge=0)
    infill_only: bool = False
    """Loss on infill targets only (sets context_weight to 0)."""

    @model_validator(mode="after")
    def _some_loss(self) -> "TrainParams":
        if self.infill_weight == 0 and (self.infill_only or self.context_weight == 0):
            raise ValueError("train.infill_weight and train.context_weight are both 0: "
                             "nothing to learn from")
        return self

    def resolved(self, pretrained: bool) -> "TrainParams":
        """These params with the learning rate filled in."""
        if self.lr is not None:
            return self
        return self.model_copy(update={"lr": LR_PRETRAINED if pretrained else LR_FROM_SCRATCH})

    @property
    def effective_context_weight(self) -> float:
        return 0.0 if self.infill_only else self.context_weight


class EvalParams(BaseModel):
    """`[params.eval]` of an ilm study."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(32, ge=1)
    levels: list[str] | None = None
    """Test levels to score; None: every level the testset stage wrote."""


KNOWN_LEVELS = (*CEFR_LEVELS, *ONESTOP_LEVELS)


class IlmParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: DataParams
    split: SplitParams = SplitParams()
    tokenizer: TokenizerParams = TokenizerParams()
    masking: MaskingParams = MaskingParams()
    testset: TestsetParams = TestsetParams()
    train_level: str | list[str] = "all"
    """The level subset the arm trains on: a level name, a list of levels (a level group), or "all"."""
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    eval: EvalParams = Field(default_factory=EvalParams)

    @model_validator(mode="after")
    def _known_level(self):
        levels = self.data.levels or _levels_of_format(self.data)
        wanted = [] if self.train_level == "all" else (
            [self.train_level] if isinstance(self.train_level, str) else self.train_level)
        for lv in wanted:
            if levels and lv not in levels:
                raise ValueError(f'unknown level "{lv}"; known: {", ".join(levels)} (or "all")')
        return self


def _levels_of_format(data: DataParams) -> tuple[str, ...] | None:
    src = data.source.lower()
    if data.format in ("cefr-sp", "efcamdat") or (data.format == "auto" and src in ("cefr-sp", "efcamdat")):
        return CEFR_LEVELS
    if data.format == "onestopenglish" or (data.format == "auto" and src == "onestopenglish"):
        return ONESTOP_LEVELS
    return None


assert set(KINDS) == {"hierarchical", "document", "paragraph", "sentence", "ngram", "word"}


def oom_policy(params: dict[str, Any]) -> dict[str, Any] | None:
    """Halve train.micro_batch and double train.grad_accum (params are nested under `train`), so
    the effective batch and, by the loss normalisation in train.py, the gradients are unchanged."""
    from fairtrial.recipes.api import oom_halve_in

    return oom_halve_in("train", TrainParams().model_dump())(params)
