"""fairtrial: comparative ML training studies with honest verdicts."""

__version__ = "0.1.0"
