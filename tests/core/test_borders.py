"""The borders of docs/DESIGN.md, enforced on the source: recipes import no engine, store or
analysis; `fairtrial.ml` imports no recipe; the command line (and the dashboard, when there is
one) imports no engine internals, only the application layer (`fairtrial.study`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fairtrial

SRC = Path(fairtrial.__file__).parent          # src/fairtrial


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every fairtrial import in `path`, anywhere in the file (inside
    functions too), relative imports resolved; `from fairtrial import engine` counts as
    fairtrial.engine."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
    package = package.removesuffix(".__init__")
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            # `from fairtrial import engine` / `from . import store`: the names may be modules
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return [(n, m) for n, m in found if m == "fairtrial" or m.startswith("fairtrial.")]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def offences(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{p.relative_to(SRC.parent)}:{n}: imports {m}" for p in files
            for n, m in imports(p) if _within(m, forbidden)]


RECIPE_FORBIDDEN = ("fairtrial.engine", "fairtrial.store", "fairtrial.analysis")
ML_FORBIDDEN = ("fairtrial.recipes",)
CLI_FORBIDDEN = ("fairtrial.engine", "fairtrial.store", "fairtrial.plan", "fairtrial.collect",
                 "fairtrial.importer", "fairtrial.analysis", "fairtrial.status",
                 "fairtrial.report", "fairtrial.stats", "fairtrial.workspace")
"""Engine internals and what the use cases orchestrate: the CLI reaches them through
fairtrial.study only."""


def recipe_files() -> list[Path]:
    contract = {SRC / "recipes" / "api.py", SRC / "recipes" / "registry.py",
                SRC / "recipes" / "__init__.py"}  # the engine's side of the contract
    return sorted(p for p in (SRC / "recipes").rglob("*.py") if p not in contract)


def test_recipes_import_no_engine_store_or_analysis():
    files = recipe_files()
    assert any(p.parent.name == "ilm" for p in files) and any(p.parent.name == "lvm" for p in files)
    bad = offences(files, RECIPE_FORBIDDEN)
    assert not bad, "recipes cross their border:\n" + "\n".join(bad)


ML_ALLOWED = ("fairtrial.ml", "fairtrial.errors")


def test_ml_imports_no_recipe():
    files = sorted((SRC / "ml").rglob("*.py"))
    assert len(files) >= 8  # the walk found the package
    bad = offences(files, ML_FORBIDDEN)
    assert not bad, "fairtrial.ml imports a recipe:\n" + "\n".join(bad)
    # stricter: the library layer imports nothing of fairtrial but its errors (and itself)
    outside = [f"{p.relative_to(SRC.parent)}:{n}: imports {m}" for p in files
               for n, m in imports(p) if not _within(m, ML_ALLOWED)]
    assert not outside, "fairtrial.ml imports outside its border:\n" + "\n".join(outside)


def test_cli_and_web_import_no_engine_internals():
    files = [SRC / "cli.py", SRC / "terminal.py"] + sorted((SRC / "web").rglob("*.py"))
    bad = offences([p for p in files if p.exists()], CLI_FORBIDDEN)
    assert not bad, "the command line bypasses the application layer:\n" + "\n".join(bad)
    assert any(m == "fairtrial.study" for _, m in imports(SRC / "cli.py"))


@pytest.mark.parametrize("source, expected", [
    ("from fairtrial.engine.local import Supervisor\n", "fairtrial.engine.local.Supervisor"),
    ("import fairtrial.store.db\n", "fairtrial.store.db"),
    ("from fairtrial import analysis\n", "fairtrial.analysis"),
    ("def f():\n    from ...engine import worker\n", "fairtrial.engine.worker"),
])
def test_the_walk_catches_every_form_of_import(tmp_path, monkeypatch, source, expected):
    """The border tests can fail: each form of import is seen, relative ones resolved, imports
    inside functions too."""
    fake = tmp_path / "fairtrial"
    (fake / "recipes" / "x").mkdir(parents=True)
    f = fake / "recipes" / "x" / "stages.py"
    f.write_text(source)
    import sys

    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    got = [m for _, m in imports(f)]
    assert expected in got
    assert offences([f], RECIPE_FORBIDDEN)
