"""Closed-form intervals. The Wilson interval lives in fairtrial.base.intervals, below the
recipes, which report it too; this is its place in stats' namespace."""

from fairtrial.base.intervals import wilson

__all__ = ["wilson"]
