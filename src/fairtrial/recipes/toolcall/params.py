"""The `toolcall` recipe's params (`[params]` of a study file), validated before any compute.

Groups follow the stages that read them: model (model), data (prepare), prompt (render), train
(train), generate (generate), score (score). No torch import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fairtrial.ml.causal_lm.params import LoopParams, LoraParams, ModelChoice

PREFIXES = {
    "none": "",
    "cep": ("Output rules: answer with the call only, no markdown fences, no prose before or "
            "after. Use exactly the format shown in the request. Parameter names exactly as "
            "given in the tool's signature; include only the arguments the request supports. "
            "Values as JSON: numbers unquoted, strings in double quotes."),
}
"""Built-in format prefixes (`prompt.prefix = "cep"`): CEP, the compact format prefix of the
study the recipe was written for (explicit output rules)."""


def _resolve(v: str, info: ValidationInfo) -> str:
    p = Path(v).expanduser()
    if not p.is_absolute():
        base = (info.context or {}).get("base_dir") or Path.cwd()
        p = Path(base) / p
    return str(p.resolve())


class ModelParams(ModelChoice):
    """The base model: `name` (short name, hub id or folder) and `allow_quantized`."""


class TrackData(BaseModel):
    """One track's data: a folder with {train,val,test,...}.jsonl (given splits kept) or one file
    (seeded split). A string is the path."""
    model_config = ConfigDict(extra="forbid")

    path: str
    format: Literal["slm-swap", "hermes-fc", "instruction"] = "slm-swap"
    """slm-swap: {"prompt", "completion"}; hermes-fc: ShareGPT conversations; instruction:
    generic JSONL with the fields named in [params.data]."""
    eval_path: str | None = None
    """Evaluation items from another folder or file (train on hermes-fc, evaluate on slm-swap)."""
    eval_format: Literal["slm-swap", "hermes-fc", "instruction"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v

    @field_validator("path", "eval_path")
    @classmethod
    def _path(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        p = _resolve(v, info)
        if not Path(p).exists():
            raise ValueError(f"data path {v} does not exist (looked for {p})")
        return p


class DataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    toolcall: TrackData | None = None
    """The toolcall track (completions `<tool_call name="F">{json}</tool_call>`)."""
    structured: TrackData | None = None
    """The structured track (completions `{"query", "tool_name", "arguments"}`)."""
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    id_field: str | None = None
    train_file: str = "train"
    """Given splits: the file stem of each part in a track's folder."""
    valid_file: str | None = "val"
    eval_file: str = "test"
    max_train: int | None = Field(None, ge=1)
    """Use the first this many training items of each track (file order), for small studies."""
    max_eval: int | None = Field(None, ge=1)
    """Evaluate on the first this many items of each track."""
    split_seed: int = 0
    """One file: the seeded split's seed (a property of the study, not of the replicate)."""
    split_valid: float = Field(0.1, ge=0, lt=1)
    split_eval: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _some_track(self):
        if self.toolcall is None and self.structured is None:
            raise ValueError("data: give at least one track: data.toolcall or data.structured "
                             "(a folder or file)")
        return self

    def tracks(self) -> dict[str, TrackData]:
        return {t: d for t, d in (("toolcall", self.toolcall), ("structured", self.structured))
                if d is not None}


class PromptParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: str = "none"
    """A built-in prefix name (none, cep) or, with `prefix_text`, ignored."""
    prefix_text: str | None = None
    """A prefix of your own (wins over `prefix`)."""
    system: str | None = None
    """A system turn; None: the item's own system text (hermes-fc) or none."""
    max_len: int = Field(512, ge=16)
    """Tokens per training example (prompt + completion); longer ones are cut at the end."""
    allow_format_mismatch: bool = False
    """Let a failed format gate pass as an integrity finding instead of stopping the study."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v not in PREFIXES:
            raise ValueError(f'unknown prefix "{v}"; built-in prefixes: {", ".join(PREFIXES)} '
                             "(or give your own text as prompt.prefix_text)")
        return v

    def prefix_value(self) -> str:
        return self.prefix_text if self.prefix_text is not None else PREFIXES[self.prefix]


class TrainParams(LoopParams, LoraParams):
    """The loop's knobs and LoRA's (r, alpha, dropout, targets, upper_layers: LoraParams)."""

    adapter: bool = True
    """False: a prompt-only arm (the base model, no training)."""
    lr: float | None = Field(2e-4, gt=0)
    micro_batch: int = Field(4, ge=1)
    batching: Literal["bucketed", "padded"] = "bucketed"
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    eval_every: int = Field(0, ge=0)
    select: Literal["best", "last"] = "last"
    checkpoint_every: int = Field(50, ge=1)
    prompt_loss_weight: float = Field(0.0, ge=0)
    """Loss weight of prompt tokens (completion tokens weigh 1)."""


class GenerateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(8, ge=1)
    stop: list[str] = []


class ToolcallParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelParams = Field(default_factory=ModelParams)
    data: DataParams
    prompt: PromptParams = Field(default_factory=PromptParams)
    train: TrainParams = Field(default_factory=TrainParams)
    generate: GenerateParams = Field(default_factory=GenerateParams)


def oom_policy(params: dict[str, Any]) -> dict[str, Any] | None:
    """Halve train.micro_batch, double train.grad_accum (the effective batch, and by the loop's
    loss normalisation the gradients, are unchanged)."""
    from fairtrial.recipes.api import oom_halve_in

    return oom_halve_in("train", TrainParams().model_dump())(params)
