"""Integrity checks, paired comparisons, decision rules and study shapes over item-score tables.
Pure: no database, no engine. The integrator calls `analyze(scores, design, context)`."""

from fairtrial.analysis.analyze import analyze, describe, without_scores
from fairtrial.analysis.compare import Comparison
from fairtrial.analysis.design import (AnalysisContext, AnalysisInputError, CrossEval, DataScaling,
                                       Decision, DecisionTree, Endpoint, Pairwise, StudyDesign)
from fairtrial.analysis.findings import Finding
from fairtrial.analysis.result import AnalysisResult

__all__ = ["analyze", "describe", "without_scores", "AnalysisResult", "AnalysisContext", "AnalysisInputError",
           "StudyDesign", "Endpoint", "Decision", "CrossEval", "DataScaling", "DecisionTree",
           "Pairwise", "Comparison", "Finding"]
