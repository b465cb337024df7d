"""The `ilm` recipe's params (`[params]` of a study file), validated once at the boundary.

Top-level keys: data, split, tokenizer, masking, testset, train_level (this module), and model,
train, eval (the model side: model.py, train.py, evaluate.py). A string is accepted where a table
has one obvious field: `data = "cefr-sp"`, `tokenizer = "gpt2"`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fairtrial.data.readers import CEFR_LEVELS, ONESTOP_LEVELS
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


def _optional(module: str, name: str):
    try:
        mod = __import__(f"fairtrial.recipes.ilm.{module}", fromlist=[name])
        return getattr(mod, name)
    except (ImportError, AttributeError):
        return None


_ModelParams = _optional("model", "ModelParams")
_TrainParams = _optional("train", "TrainParams")
_EvalParams = _optional("evaluate", "EvalParams")

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
    if _ModelParams is not None:
        model: _ModelParams = Field(default_factory=_ModelParams)  # type: ignore[valid-type]
    if _TrainParams is not None:
        train: _TrainParams = Field(default_factory=_TrainParams)  # type: ignore[valid-type]
    if _EvalParams is not None:
        eval: _EvalParams = Field(default_factory=_EvalParams)  # type: ignore[valid-type]

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
