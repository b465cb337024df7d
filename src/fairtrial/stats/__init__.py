"""Pure numerical code over arrays: bootstrap, permutation tests, corrections, intervals, curves.
Knows nothing about ML, studies or the store."""

from fairtrial.stats.bootstrap import (Draws, bootstrap_p_value, one_level_mean,
                                       percentile_interval, two_level)
from fairtrial.stats.curves import PowerLaw, fit_power_law
from fairtrial.stats.intervals import wilson
from fairtrial.stats.multiple import adjust_p, alpha_levels
from fairtrial.stats.permutation import sign_flip_p

__all__ = ["Draws", "two_level", "percentile_interval", "bootstrap_p_value", "one_level_mean",
           "sign_flip_p", "adjust_p", "alpha_levels", "wilson", "PowerLaw", "fit_power_law"]
