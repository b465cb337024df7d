"""Import item scores produced elsewhere as an external arm (`fairtrial import`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairtrial.app.resolve import open_store

if TYPE_CHECKING:
    from fairtrial.spec import Spec
    from fairtrial.workspace import Workspace


def import_scores(spec: Spec, ws: Workspace, arm: str, scores: Path, metric: str | None = None,
                  eval_set: str | None = None, outputs: bool = False) -> dict[str, Any]:
    """Add item scores produced elsewhere as an external arm; returns {"arm", "key", "rows",
    "eval_sets", "replicates", "coverage", "same_items_as_study"} (see docs/cli.md).
    `outputs`: the file holds raw outputs, scored by the recipe's own scorer (plus "outputs":
    {"items", "scored", "missing", "missing_ids"})."""
    from fairtrial.importer import import_scores as _import

    store = open_store(ws)
    if not store.get_study(spec.name):
        store.upsert_study(spec.name, str(spec.path), spec.recipe.name, spec.digest, spec.raw)
    return _import(ws, store, spec, arm, scores, metric, eval_set, outputs=outputs)
