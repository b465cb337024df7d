"""The border of fairtrial.ml: it imports nothing of fairtrial but `fairtrial.errors` (and itself),
so recipes stand on it and never the other way round."""

import ast
from pathlib import Path

import fairtrial

ML = Path(fairtrial.__file__).parent / "ml"
ALLOWED = ("fairtrial.ml", "fairtrial.errors")


def fairtrial_imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import of a fairtrial module in `path`, relative
    imports resolved."""
    package = ".".join(path.relative_to(ML.parent.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
                found += [(node.lineno, f"{mod}.{a.name}" if not node.module else mod)
                          for a in node.names]
            else:
                found += [(node.lineno, node.module or "")]
    return [(n, m) for n, m in found if m == "fairtrial" or m.startswith("fairtrial.")]


def allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED)


def test_ml_imports_nothing_of_fairtrial_but_errors():
    files = sorted(ML.rglob("*.py"))
    assert len(files) >= 8  # the walk found the package
    bad = [f"{p.relative_to(ML.parent)}:{n}: {m}" for p in files
           for n, m in fairtrial_imports(p) if not allowed(m)]
    assert not bad, "fairtrial.ml imports outside its border:\n" + "\n".join(bad)


def test_the_walk_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    """The check above can fail: a module that imports a recipe is caught, however it does."""
    import test_ml_border as me

    pkg = tmp_path / "fairtrial" / "ml" / "causal_lm"
    pkg.mkdir(parents=True)
    bad = pkg / "x.py"
    bad.write_text("import os\nfrom ... import recipes\nfrom fairtrial.errors import UserError\n"
                   "def f():\n    from fairtrial.recipes.ilm import train\n"
                   "from .. import checkpoint\n")
    monkeypatch.setattr(me, "ML", tmp_path / "fairtrial" / "ml")
    got = [m for _, m in fairtrial_imports(bad)]
    assert sorted(got) == ["fairtrial.errors", "fairtrial.ml.checkpoint", "fairtrial.recipes",
                           "fairtrial.recipes.ilm"]
    assert sorted(m for m in got if not allowed(m)) == ["fairtrial.recipes",
                                                        "fairtrial.recipes.ilm"]
