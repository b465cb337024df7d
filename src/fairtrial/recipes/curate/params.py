"""The curate recipe's params: one pydantic model, every default visible here.

Top-level keys map to stages (a stage's cache key holds only the keys it consumes):
  sources, eval_sets, on_error -> collect   (what to read, how to treat malformed rows)
  quality                      -> quality   (deterministic scores and their thresholds)
  language                     -> language  (the language filter)
  dedup                        -> dedup     (exact, near-duplicate and contamination removal)
  select                       -> select    (the arms' training sets: equal size, equal tokens)
  distill                      -> every part 2 stage (false: curation only, part 2 skipped)
  train_set, teacher           -> teacher   (part 2: the arm's training set, its responses distilled
                                             from a teacher when one is declared)
  student, train               -> train     (LoRA on the full-precision student)
  student, merge               -> merge     (merge the adapter, check the merge)
  quantize                     -> quantize  (optional: an int8 deployment copy)
  evaluate, judge              -> evaluate  (GSM8K accuracy, maj@k, consistency, judged wins)
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

FORMATS = ("instruction", "sharegpt", "gsm8k", "slm-swap", "hermes-fc")
ARM_SETS = ("curated", "random", "quality_only", "language_only", "dedup_only")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _unit(name: str, v: float | None) -> float | None:
    """A threshold that is a share: (0, 1]."""
    if v is not None and not (0.0 < v <= 1.0):
        raise ValueError(f"{name} = {v} is outside (0, 1]; a share between 0 (exclusive) and 1")
    return v


class SourceParams(_Strict):
    """One data source: a file or folder (or a data set name known to fairtrial.data plus a path
    inside it, "gsm8k/train.jsonl") read by one of fairtrial.data.instructions' readers."""
    name: str = Field(min_length=1)
    """The source's name in every table and count (e.g. "gsm8k-train")."""
    path: str = Field(min_length=1)
    format: Literal["instruction", "sharegpt", "gsm8k", "slm-swap", "hermes-fc"]
    prompt_field: str | None = None
    input_field: str | None = None
    response_field: str | None = None
    id_field: str | None = None
    system_field: str | None = None
    conversations_field: str | None = None
    """Field names for format "instruction" (prompt/input/response/id/system) or "sharegpt"
    (conversations/id); the other formats fix their fields."""
    limit: int | None = Field(None, ge=1)
    """Keep only the first `limit` rows (in file order): for smoke tests."""

    @field_validator("path")
    @classmethod
    def _relative_to_study(cls, v: str, info: ValidationInfo) -> str:
        """A relative path that exists beside the study file becomes absolute; otherwise it stays
        as written (a data set name and a path inside it, "gsm8k/train.jsonl")."""
        p = Path(v).expanduser()
        base = (info.context or {}).get("base_dir")
        if not p.is_absolute() and base is not None and (Path(base) / p).exists():
            return str((Path(base) / p).resolve())
        return str(p) if p.is_absolute() else v

    @model_validator(mode="after")
    def _fields(self) -> SourceParams:
        named = {k: v for k, v in self.fields().items() if v is not None}
        allowed = {"instruction": {"prompt_field", "input_field", "response_field", "id_field",
                                   "system_field"},
                   "sharegpt": {"conversations_field", "id_field"}}.get(self.format, set())
        extra = sorted(set(named) - allowed)
        if extra:
            raise ValueError(f"source {self.name!r}: format {self.format!r} does not take "
                             f"{', '.join(extra)}"
                             + (f" (it takes {', '.join(sorted(allowed))})" if allowed else
                                " (its fields are fixed)"))
        return self

    def fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("prompt_field", "input_field", "response_field",
                                              "id_field", "system_field", "conversations_field")}


class QualityParams(_Strict):
    min_prompt_tokens: int = Field(3, ge=0)
    max_prompt_tokens: int = Field(4096, ge=1)
    min_response_tokens: int = Field(1, ge=0)
    max_response_tokens: int = Field(4096, ge=1)
    max_repetition: float | None = 0.5
    """Share of the response's word 3-grams that repeat an earlier 3-gram of it; None: no rule."""
    max_non_letter: float | None = 0.9
    """Share of non-space characters of prompt + response that are not letters (JSON tool calls
    and GSM8K calculator notes run high; default keeps them)."""
    max_copy: float | None = 0.9
    """Share of the response's word 3-grams found in the prompt (a response that echoes it)."""
    drop_refusals: bool = True
    """A response that matches a refusal phrase ("I'm sorry, but I can't", "as an AI language model")."""
    drop_boilerplate: bool = False
    """A response with chat boilerplate ("I hope this helps", "feel free to ask"); off by default:
    counted, not removed."""
    drop_truncated: bool = True
    """A response that ends mid-sentence (no final punctuation, digit or closing bracket) or with
    unbalanced brackets or code fences."""
    ifd: bool = False
    """Also score the instruction-following difficulty (Li et al., 2023) under `ifd_model`: the
    response's mean token loss with the prompt over its loss without it (slow: a forward pass
    of the model per sample and condition; SmolLM2-135M on a CPU)."""
    ifd_model: str = "smollm2-135m"
    ifd_max_tokens: int = Field(256, ge=8)
    ifd_batch_size: int = Field(8, ge=1)
    max_ifd: float | None = Field(1.0, gt=0)
    """With `ifd`: remove a sample whose IFD exceeds this (above 1 the prompt makes the response
    less likely); None: scored, not removed."""

    @field_validator("max_repetition", "max_non_letter", "max_copy")
    @classmethod
    def _share(cls, v, info):
        return _unit(f"quality.{info.field_name}", v)

    @model_validator(mode="after")
    def _ranges(self) -> QualityParams:
        for a in ("prompt", "response"):
            lo, hi = getattr(self, f"min_{a}_tokens"), getattr(self, f"max_{a}_tokens")
            if lo > hi:
                raise ValueError(f"quality.min_{a}_tokens = {lo} exceeds max_{a}_tokens = {hi}")
        return self


class LanguageParams(_Strict):
    enabled: bool = True
    language: str = "en"
    """ISO 639-1 code of the language to keep."""
    field: Literal["prompt", "response", "both"] = "prompt"
    """What is classified: the prompt (default: responses are often code, JSON or numbers), the
    response, or both (a sample is kept only when both are in the language)."""
    candidates: list[str] | None = None
    """ISO 639-1 codes lingua chooses among (must include `language`); None: all 75 of its
    languages (loading them takes about 30 s and 1.1 GB; a short list loads in a second)."""
    min_relative_distance: float = Field(0.1, ge=0.0, le=0.99)
    """lingua's minimum relative distance between the top two languages' log-probabilities;
    closer than that, the text abstains (lingua returns no language)."""
    min_chars: int = Field(20, ge=0)
    """Texts shorter than this (after stripping markup) abstain: the measurement shows language
    identification is unreliable on them."""
    max_chars: int = Field(1000, ge=1)
    """Only the first max_chars characters are classified (speed; long texts do not need more)."""
    abstain: Literal["keep", "drop"] = "keep"
    """What happens to an abstained text; counted apart either way."""

    @field_validator("language")
    @classmethod
    def _iso(cls, v):
        return _iso_code("language.language", v)

    @field_validator("candidates")
    @classmethod
    def _isos(cls, v):
        return None if v is None else [_iso_code("language.candidates", c) for c in v]

    @model_validator(mode="after")
    def _has_target(self) -> LanguageParams:
        if self.candidates is not None and self.language not in self.candidates:
            raise ValueError(f"language.candidates {self.candidates} must include language.language "
                             f"{self.language!r}")
        return self


def _iso_code(name: str, v: str) -> str:
    from lingua import IsoCode639_1

    if len(v) != 2 or not hasattr(IsoCode639_1, v.upper()):
        raise ValueError(f"{name} = {v!r} is not an ISO 639-1 code lingua knows "
                         "(e.g. \"en\", \"de\", \"fr\")")
    return v.lower()


class DedupParams(_Strict):
    field: Literal["prompt", "prompt+response"] = "prompt"
    """What is compared: the prompt (an instruction asked twice is a duplicate whatever the answers)."""
    ngram: int = Field(3, ge=1)
    """Word n-grams (shingles) of the normalised text."""
    threshold: float = 0.8
    """Jaccard similarity (of the shingle sets) at or above which two samples are near-duplicates."""
    num_perm: int = Field(128, ge=8)
    bands: int = Field(32, ge=1)
    """LSH bands; rows per band = num_perm / bands. 32 x 4: a pair at Jaccard 0.8 becomes a
    candidate with probability 1 - (1 - 0.8^4)^32 > 0.999999; at 0.5, 0.87 (then rejected by the
    real Jaccard)."""
    seed: int = 1
    """MinHash seed."""
    backend: Literal["rensa", "datasketch"] = "rensa"
    contamination: bool = True
    """Remove training samples that duplicate an evaluation item, exactly or near."""

    @field_validator("threshold")
    @classmethod
    def _thr(cls, v):
        return _unit("dedup.threshold", v)

    @model_validator(mode="after")
    def _bands(self) -> DedupParams:
        if self.num_perm % self.bands:
            raise ValueError(f"dedup.num_perm = {self.num_perm} is not a multiple of dedup.bands = "
                             f"{self.bands}; choose bands that divide it (e.g. 16, 32, 64)")
        return self


class SelectParams(_Strict):
    arms: list[Literal["curated", "random", "quality_only", "language_only", "dedup_only"]] = \
        Field(default_factory=lambda: ["curated", "random", "quality_only", "language_only",
                                       "dedup_only"], min_length=1)
    size: int | None = Field(None, ge=1)
    """Samples per arm; None: the smallest arm pool."""
    token_budget: int | None = Field(None, ge=1)
    """Tokens (prompt + response) per arm; None: the smallest total of the arms' first `size`."""
    tolerance: float = Field(0.01, ge=0, lt=1)
    """How far above the budget an arm may end (a share of the budget)."""
    seed: int = 0
    """Seed of the random orders (random arm, single-filter arms)."""



# ------------------------------------------------------------------------------ part 2

class EndpointParams(_Strict):
    """An OpenAI-compatible endpoint (`fairtrial.ml.endpoint.EndpointSpec`; the key is read from
    the variable named by `api_key_env`, never written anywhere)."""
    base_url: str = Field(pattern=r"^https?://")
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    max_concurrency: int = Field(4, ge=1)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(300.0, gt=0)


class TeacherParams(_Strict):
    """Who writes the training responses. Neither `model` nor `endpoint`: the data set's own."""
    model: str | None = None
    """A local causal LM (short name, hub id or folder)."""
    endpoint: EndpointParams | None = None
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _one(self) -> TeacherParams:
        if self.model and self.endpoint:
            raise ValueError("teacher: give teacher.model (a local model) or teacher.endpoint, "
                             "not both")
        return self

    @property
    def name(self) -> str | None:
        return self.endpoint.model if self.endpoint else self.model


class StudentParams(ModelChoice):
    """The full-precision base the adapter is trained on: `name` (short name, hub id or folder)
    and `allow_quantized` (train and merge on a quantised base anyway; flagged in the report)."""


class TrainParams(LoopParams, LoraParams):
    """The loop's knobs and LoRA's (r, alpha, dropout, targets, upper_layers: LoraParams)."""

    lr: float | None = Field(2e-4, gt=0)
    micro_batch: int = Field(4, ge=1)
    eval_every: int = Field(0, ge=0)
    select: Literal["best", "last"] = "last"
    checkpoint_every: int = Field(50, ge=1)
    max_len: int = Field(512, ge=16)
    """Tokens per training example (prompt + response); longer ones are cut at the end."""
    prompt_loss_weight: float = Field(0.0, ge=0)
    """Loss weight of prompt tokens (response tokens weigh 1): 0 is completion-only loss."""
    valid_share: float = Field(0.0, ge=0, lt=1)
    """Share of the training set held out for validation losses (0: none)."""


class MergeParams(_Strict):
    prompts: int = Field(64, ge=1)
    """Held-out prompts (the declared evaluation sets' questions) for the merge check; the ML layer
    requires at least 64 unless `min_prompts` is lowered (tests only)."""
    min_prompts: int = Field(64, ge=1)
    min_top1_agreement: float = Field(0.98, gt=0, le=1)
    max_mean_kl: float = Field(0.01, gt=0)
    max_relative_kl: float | None = Field(0.1, gt=0)
    allow_failed_check: bool = False
    """A merge that fails its check is a finding in the report instead of a failed stage."""
    force_quantized: bool = False
    """Merge into a quantised base anyway (refused by default; always flagged)."""


class QuantizeParams(_Strict):
    enabled: bool = False
    """An int8 dynamic-quantised copy of the merged model (PyTorch, CPU); evaluate uses it."""


class JudgeParams(_Strict):
    kind: Literal["reference", "llm", "none"] = "reference"
    """reference: the deterministic sentence-embedding judge (offline); llm: a language model
    with the pairwise prompt (`model` or `endpoint`); none: no judged comparison."""
    name: str | None = None
    """The judge's name, checked against the teacher and the contestants (default: the model)."""
    encoder: str = "all-MiniLM-L6-v2"
    margin: float = Field(0.02, ge=0, lt=2)
    model: str | None = None
    endpoint: EndpointParams | None = None
    prompt: str | None = None
    """A pairwise prompt of your own: needs {question}, {answer_a}, {answer_b}; may use {reference}."""
    retries: int = Field(2, ge=0)
    max_new_tokens: int = Field(256, ge=1)
    """The judge's answer length (an LLM judge may reason before its verdict line)."""
    items: int | None = Field(None, ge=1)
    """Judge the first this many evaluation items (None: all)."""
    against: Literal["dataset", "teacher"] = "dataset"
    """The reference system: "dataset", the data set's solutions (calculator markup removed);
    "teacher", the teacher's own answers to the evaluation questions (the reference stage). Not
    another arm: a stage reads only its own arm's artifacts; compare two arms' judged win rates
    against the same reference instead."""

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, v):
        if v is not None:
            from fairtrial.recipes.curate.judge import check_prompt

            check_prompt(v)
        return v

    @model_validator(mode="after")
    def _source(self) -> JudgeParams:
        if self.kind == "llm" and bool(self.model) == bool(self.endpoint):
            raise ValueError("judge.kind = \"llm\" needs exactly one of judge.model (a local "
                             "model) or judge.endpoint")
        return self

    @property
    def judge_name(self) -> str:
        if self.name:
            return self.name
        if self.kind == "llm":
            return self.endpoint.model if self.endpoint else str(self.model)
        return f"reference-judge:{self.encoder}"


class EvaluateParams(_Strict):
    path: str = "gsm8k/test.jsonl"
    """GSM8K-format evaluation items (a data set name and a file inside it, or a path)."""
    items: int | None = Field(200, ge=1)
    """The declared subset: the first this many items of the file (None: all)."""
    shots: int = Field(0, ge=0)
    shots_path: str = "gsm8k/train.jsonl"
    instruction: str | None = None
    """The system turn (None: `gsm8k.DEFAULT_INSTRUCTION`)."""
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(8, ge=1)
    samples: int = Field(0, ge=0)
    """n sampled answers per item for maj@k and consistency (0: none)."""
    k: int = Field(1, ge=1)
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    seed: int = 0
    """Seed of the few-shot draw and of the sampling (the same for every arm: paired items)."""

    @field_validator("path", "shots_path")
    @classmethod
    def _rel(cls, v: str, info: ValidationInfo) -> str:
        return SourceParams._relative_to_study(v, info)

    @model_validator(mode="after")
    def _k(self) -> EvaluateParams:
        if self.samples and self.k > self.samples:
            raise ValueError(f"evaluate.k = {self.k} is larger than evaluate.samples = "
                             f"{self.samples} drawn per item; draw at least k samples")
        return self

class CurateParams(_Strict):
    sources: list[SourceParams] = Field(default_factory=list)
    eval_sets: list[SourceParams] = Field(default_factory=list)
    """Evaluation items (e.g. GSM8K test): read to find contamination, never trained on."""
    on_error: Literal["raise", "skip"] = "raise"
    """Malformed source rows: "raise" stops collect naming file and line; "skip" leaves them out
    and counts them (file, line, reason) in the collect stage's funnel."""
    quality: QualityParams = Field(default_factory=QualityParams)
    language: LanguageParams = Field(default_factory=LanguageParams)
    dedup: DedupParams = Field(default_factory=DedupParams)
    select: SelectParams = Field(default_factory=SelectParams)
    train_set: Literal["curated", "random", "quality_only", "language_only", "dedup_only"] = "curated"
    """Which selected set this arm trains on (part 2's train stage)."""
    distill: bool = True
    """False: a part-1 study (curation only): part 2's stages (teacher, train, merge, quantize,
    evaluate) record that they were skipped, load no model and write no scores."""
    teacher: TeacherParams = Field(default_factory=TeacherParams)
    student: StudentParams = Field(default_factory=StudentParams)
    train: TrainParams = Field(default_factory=TrainParams)
    merge: MergeParams = Field(default_factory=MergeParams)
    quantize: QuantizeParams = Field(default_factory=QuantizeParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    judge: JudgeParams = Field(default_factory=JudgeParams)

    @model_validator(mode="after")
    def _names(self) -> CurateParams:
        names = [s.name for s in self.sources] + [s.name for s in self.eval_sets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be distinct across sources and eval_sets; "
                             f"repeated: {', '.join(dup)}")
        if self.teacher.name and self.judge.kind == "llm":
            from fairtrial.recipes.curate.teacher import role_findings

            found = role_findings(teacher=self.teacher.name, judge=self.judge.judge_name)
            if found:
                raise ValueError(found[0])
        return self


def oom_policy(params: dict[str, Any]) -> dict[str, Any] | None:
    """Halve train.micro_batch, double train.grad_accum (the effective batch is unchanged)."""
    from fairtrial.recipes.api import oom_halve_in

    return oom_halve_in("train", TrainParams().model_dump())(params)
