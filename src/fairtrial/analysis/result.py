"""The analysis result: everything the report renders, and `to_dict()` for `--json`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairtrial.analysis.compare import Comparison
from fairtrial.analysis.findings import Finding
from fairtrial.analysis.shapes import (ArmSummary, CrossEvalResult, DecisionTreeResult,
                                       ScalingResult, WinTieLoss)


@dataclass
class AnalysisResult:
    question: str
    name: str
    endpoint: dict[str, Any]
    decision: dict[str, Any]
    verdict: str                       # supported | refuted | inconclusive | mixed | none
    headline: str                      # the report's first line
    findings: list[Finding] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)     # the decided hypotheses
    secondary: list[Comparison] = field(default_factory=list)
    baselines: list[Comparison] = field(default_factory=list)
    summaries: list[ArmSummary] = field(default_factory=list)
    cross_eval: CrossEvalResult | None = None
    scaling: ScalingResult | None = None
    decision_tree: DecisionTreeResult | None = None
    pairwise: list[WinTieLoss] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    progress: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    sections: list[dict[str, Any]] = field(default_factory=list)
    """The recipe's own report sections (Recipe.report_sections), shown as given."""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: tuples become lists, numpy scalars plain numbers, NaN/inf become None."""
        return _plain(dataclasses.asdict(self))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
