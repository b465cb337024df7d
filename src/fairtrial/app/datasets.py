"""The public data sets a person lists and fetches (`fairtrial data list`, `data fetch`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fairtrial.data import registry


def list_datasets() -> list[dict[str, Any]]:
    """Every known data set: name, n_files, bytes, licence and where it is found here (None: not
    on this machine)."""
    return registry.list_datasets()


def fetch(name: str, dest: Path | None = None,
          progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Download a data set from its upstream addresses, verify every file's sha256 and return its
    folder; `progress(k, n, path)` after each verified file."""
    return registry.fetch(name, dest, progress=progress)
