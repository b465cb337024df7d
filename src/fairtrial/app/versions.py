"""Versions (`fairtrial version --json`, and the head of every crash log): fairtrial's, the code
version recorded in every artifact, Python's and the main libraries'."""

from __future__ import annotations

import platform
from typing import Any

LIBRARIES = ("torch", "transformers", "numpy", "pandas", "pyarrow", "sqlalchemy", "pydantic")


def versions() -> dict[str, Any]:
    """fairtrial's version, the code version recorded in every artifact, Python's and the main
    libraries' (None: not installed). Never raises for a missing library."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from fairtrial import __version__
    from fairtrial.store.artifacts import code_version

    libs: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = dist_version(lib)
        except PackageNotFoundError:
            libs[lib] = None
    return {"fairtrial": __version__, "code_version": code_version(),
            "python": platform.python_version(), "libraries": libs}
