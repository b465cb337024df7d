"""One rule for "a Hugging Face hub name or a local folder", with a clear offline error.

    resolve("HuggingFaceTB/SmolLM2-1.7B-Instruct")  -> Resolved(kind="cached" | "hub", ...)
    resolve("/models/gpt2-medium")                    -> Resolved(kind="folder", ...)
    resolve("./model.gguf", allow_files=True)         -> Resolved(kind="file", ...)

The rule (transformers' own order, made explicit so every caller decides the same way):
  1. A name is a path when it starts with "/", "./", "../" or "~", is "." or "..", names something
     that exists on disk, has more than one "/" (a hub id is "name" or "org/name") or ends in
     ".gguf". A path must exist: a folder (or, where `allow_files`, a file). A missing path is an
     error, never a hub lookup.
  2. Anything else is a hub id. It must be a valid one. When the local Hugging Face cache holds
     it (`filename`, default config.json, is cached), it resolves to the cached snapshot folder, so
     loading it needs no network, with or without HF_HUB_OFFLINE.
  3. A hub id that is not cached is fetched by the loader, unless HF_HUB_OFFLINE (or
     TRANSFORMERS_OFFLINE) is set: then `resolve` fails at once with one line that says so,
     instead of the loader's traceback (or a network time-out on a machine without access).

Errors are `ModelNotFoundError`, a `fairtrial.errors.UserError` (the CLI prints it as one line,
exit 2) and a `ValueError` (a recipe stage turns it into a StageError like any bad parameter).
`what` names the parameter in messages ("model.pretrained", "embed.model").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fairtrial.errors import UserError


class ModelError(UserError, ValueError):
    """A model that cannot be found or loaded; `str(err)` is the whole one-line message."""


class ModelNotFoundError(ModelError):
    """A name that is neither a local folder nor a hub model available to this machine."""


@dataclass(frozen=True)
class Resolved:
    """Where a model name points. `path` is what `from_pretrained` gets."""

    name: str
    """The name as given."""
    kind: Literal["folder", "file", "cached", "hub"]
    """folder / file: a local path; cached: a hub id found in the local cache (path is its
    snapshot folder); hub: a hub id to fetch (path is the id)."""
    path: str
    revision: str | None = None
    """The cached snapshot's commit hash (kind "cached")."""

    @property
    def local(self) -> bool:
        """Loading needs no network."""
        return self.kind != "hub"


def is_offline() -> bool:
    """HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, read now (huggingface_hub reads it once, at import,
    so a test or a stage that sets it later would not be seen there)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if env is not None:
        return env.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The hub cache folder, from HF_HUB_CACHE / HF_HOME as they are now."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def looks_like_path(name: str) -> bool:
    """Rule 1: whether `name` is meant as a local path rather than a hub id."""
    return (name.startswith(("/", "./", "../", "~")) or name in (".", "..")
            or name.count("/") > 1 or "\\" in name or name.lower().endswith(".gguf")
            or Path(name).expanduser().exists())


def resolve(name: str, *, what: str = "model", filename: str = "config.json",
            allow_files: bool = False) -> Resolved:
    """Where `name` points, by the rule above; raises ModelNotFoundError (one line) when it points
    nowhere this machine can load from. Reads no weights and makes no network request."""
    name = str(name)
    if not name.strip():
        raise ModelNotFoundError(f"{what}: empty model name; give a hub name such as "
                                 f"\"HuggingFaceTB/SmolLM2-135M-Instruct\" or a local folder")
    if looks_like_path(name):
        p = Path(name).expanduser()
        if p.is_dir():
            return Resolved(name, "folder", str(p.resolve()))
        if p.is_file():
            if allow_files:
                return Resolved(name, "file", str(p.resolve()))
            raise ModelNotFoundError(f"{what} {name!r} is a file; give a model folder (one that "
                                     f"holds config.json) or a hub name")
        raise ModelNotFoundError(f"{what} {name!r}: no such folder"
                                 f"{' or file' if allow_files else ''}; give an existing local "
                                 f"model folder or a hub name such as \"org/model\"")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ModelNotFoundError(f"{what} {name!r} is neither a local folder nor a valid hub "
                                 f"name (\"name\" or \"org/name\": letters, digits, '-', '_', "
                                 f"'.')") from None
    cache = hub_cache_dir()
    cached = try_to_load_from_cache(name, filename, cache_dir=cache)
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        for _ in Path(filename).parent.parts:  # a file in a subfolder: up to the snapshot
            snapshot = snapshot.parent
        return Resolved(name, "cached", str(snapshot), revision=snapshot.name)
    if is_offline():
        raise ModelNotFoundError(offline_message(name, what, cache))
    return Resolved(name, "hub", name)


def offline_message(name: str, what: str = "model", cache: Path | None = None) -> str:
    """The one line for a hub name that is not here and may not be fetched."""
    return (f"{what} {name!r} is neither a local folder nor in the local Hugging Face cache "
            f"({cache or hub_cache_dir()}), and HF_HUB_OFFLINE is set, so it cannot be fetched: "
            f"run once with network access and HF_HUB_OFFLINE unset to download it, or give a "
            f"local model folder")


def fetch_error(name: str, exc: BaseException, what: str = "model") -> ModelNotFoundError:
    """The one-line error for a hub download that failed (no network, unknown or gated repo)."""
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    return ModelNotFoundError(f"{what} {name!r} is neither a local folder nor in the local "
                              f"Hugging Face cache, and fetching it from the hub failed "
                              f"({type(exc).__name__}: {detail}); check the name and the network "
                              f"access (HF_HUB_OFFLINE must be unset), or give a local model folder")
