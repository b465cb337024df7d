"""The study file's [metrics] merged into the recipe's, and the aggregations the analysis can
compute."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from fairtrial.recipes.api import Metric, Recipe
from fairtrial.spec.schema import MetricSpec

ANALYSED_AGGREGATIONS = ("mean", "geomean", "proportion")
"""The aggregations the analysis computes (fairtrial.analysis.design.SUPPORTED_AGGREGATIONS; a
test keeps the two equal, and this package does not import the analysis, which loads scipy).
A metric declared "median" may be produced and shown, but not decide or be compared."""


def toml_key(name: str) -> str:
    """`name` as a TOML key (quoted when a bare key cannot hold it), for messages."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def with_declared_metrics(recipe: Recipe, declared: dict[str, MetricSpec], err) -> Recipe:
    """The recipe with the study file's [metrics] added. A metric the recipe declares may be
    repeated only as the recipe declares it."""
    extra = []
    for name, m in declared.items():
        if not name.strip():
            err(("metrics",), "a metric needs a non-empty name")
            continue
        try:
            known = recipe.metric(name)
        except KeyError:
            extra.append(Metric(name, m.direction, m.aggregation, m.description, m.missing))
            continue
        if (known.direction, known.aggregation) != (m.direction, m.aggregation):
            err(("metrics", name),
                f'recipe {recipe.name} declares {name} as direction "{known.direction}", '
                f'aggregation "{known.aggregation}"; remove it here or declare it the same way')
    return replace(recipe, metrics=tuple(recipe.metrics) + tuple(extra)) if extra else recipe
