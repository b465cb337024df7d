"""The layer rules of ../shared/DESIGN.md as a test: the import contracts in pyproject.toml
([tool.importlinter], drawn in docs/architecture.md) hold on src/fairtrial, and each of them fails
on an import it exists to forbid. Re-measure the graph's figures with bench/import_graph.py.

The contracts are import-linter's (kept as the tool, not re-implemented here); a listed exception
(`ignore_imports`) that no longer matches an import fails the check too, so the list only shrinks."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application import use_cases
from importlinter.domain.contract import registry

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

configuration.configure()
use_cases._register_built_in_contract_types()  # what lint_imports does before it reads contracts
OPTIONS = use_cases.read_user_options(str(PYPROJECT))


def graph() -> grimp.ImportGraph:
    return grimp.build_graph("fairtrial", include_external_packages=True, cache_dir=None)


def contract(contract_id: str):
    (opts,) = [c for c in OPTIONS.contracts_options if c["id"] == contract_id]
    cls = registry.get_contract_class(opts["type"])
    return cls(name=opts["name"], session_options=OPTIONS.session_options, contract_options=opts)


def test_every_import_contract_is_kept(capsys):
    ok = use_cases.lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)
    out = capsys.readouterr().out
    assert ok, "an import crosses a border of ../shared/DESIGN.md (docs/architecture.md):\n" + out


# One import each contract exists to forbid, added to the real graph: the contract must break.
@pytest.mark.parametrize("contract_id, importer, imported", [
    ("layers", "fairtrial.store.db", "fairtrial.engine.supervisor"),        # upward
    ("layers", "fairtrial.data.registry", "fairtrial.store.db"),            # across one level
    ("acyclic", "fairtrial.engine.local", "fairtrial.engine.supervisor"),   # the old cycle
    ("ml", "fairtrial.ml.hub", "fairtrial.data.registry"),
    ("recipes", "fairtrial.recipes.curate.judge", "fairtrial.stats.bootstrap"),
    ("recipes", "fairtrial.recipes.ilm.documents", "fairtrial.app.datasets"),
    ("numeric", "fairtrial.analysis.compare", "fairtrial.ml.hub"),
    ("report", "fairtrial.report.markdown", "fairtrial.stats.bootstrap"),
    ("ui", "fairtrial.cli", "fairtrial.data.registry"),
    ("ui", "fairtrial.entry", "fairtrial.store.db"),
    ("app", "fairtrial.app.status", "rich"),
    ("plan-data", "fairtrial.plan", "fairtrial.store.db"),
    ("sql", "fairtrial.app.run", "sqlalchemy"),
])
def test_each_contract_breaks_on_what_it_forbids(contract_id, importer, imported):
    assert contract(contract_id).check(graph(), verbose=False).kept  # holds on the code as is
    g = graph()  # a check removes the contract's ignored imports from the graph it is given
    g.add_import(importer=importer, imported=imported, line_number=1, line_contents="import x")
    assert not contract(contract_id).check(g, verbose=False).kept


def test_the_layers_contract_places_every_top_level_module():
    """exhaustive: a new module or package at the top of fairtrial must be given a layer."""
    g = graph()
    g.add_module("fairtrial.newthing")
    g.add_import(importer="fairtrial.newthing", imported="fairtrial.errors", line_number=1,
                 line_contents="import fairtrial.errors")
    assert not contract("layers").check(g, verbose=False).kept
