"""The study file's schema: validated once, at the boundary; nothing downstream re-validates.

Every error reads `study.toml:12: arms[2].data: what is wrong, what would be right`, and all errors
of a file are reported at once (one per line), before any compute.

schema    the file's pydantic models and limits (seeds, names)
study     the validated study: `Spec` and its `Arm`s
errors    `SpecError`, and pydantic's errors in words a user can act on
grid      arm names, the [grid] expanded, an arm's params over the study's
metrics   the study's [metrics] merged into the recipe's; the aggregations the analysis computes
arms      validate's checks of the trained and external arms
validate  `validate`: the parsed file to a `Spec`, one small check per concern
load      `load_spec`: read the TOML file, then validate it
"""

from fairtrial.spec.errors import SpecError
from fairtrial.spec.load import load_spec
from fairtrial.spec.metrics import ANALYSED_AGGREGATIONS
from fairtrial.spec.study import Spec
from fairtrial.spec.validate import validate

__all__ = ["ANALYSED_AGGREGATIONS", "Spec", "SpecError", "load_spec", "validate"]
