"""Learning-curve fit: endpoint as a power law of the training-set size."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit


@dataclass(frozen=True)
class PowerLaw:
    """y = c + a * n**(-b): with b > 0 the curve flattens towards c (the asymptote) as n grows."""
    a: float
    b: float
    c: float
    residual_rms: float
    n_points: int

    def __call__(self, n):
        return self.c + self.a * np.power(np.asarray(n, dtype=np.float64), -self.b)

    def to_dict(self) -> dict:
        return {"form": "y = c + a * n^(-b)", "a": self.a, "b": self.b, "c": self.c,
                "residual_rms": self.residual_rms, "n_points": self.n_points}


def fit_power_law(sizes, values) -> PowerLaw:
    """Least-squares fit of y = c + a n^-b. Needs three or more distinct sizes (three parameters:
    with exactly three the curve interpolates and residual_rms is 0). Raises ValueError when the
    input is too small or the fit does not converge."""
    n = np.asarray(sizes, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if n.shape != y.shape or n.ndim != 1:
        raise ValueError("sizes and values must be 1-d and of equal length")
    if np.unique(n).size < 3:
        raise ValueError(f"a learning-curve fit needs 3 or more distinct sizes; got {np.unique(n).size}")
    if np.any(n <= 0) or not np.all(np.isfinite(y)):
        raise ValueError("sizes must be positive and values finite")
    # Work in units of the smallest size so a and c start on the scale of y.
    scale = n.min()
    x = n / scale
    order = np.argsort(x)
    y_first, y_last = y[order[0]], y[order[-1]]
    p0 = (y_first - y_last or 1e-3, 0.5, y_last)

    def f(x, a, b, c):
        return c + a * np.power(x, -b)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            (a, b, c), _ = curve_fit(f, x, y, p0=p0, bounds=([-np.inf, 0.0, -np.inf],
                                                             [np.inf, 5.0, np.inf]), maxfev=20_000)
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"power-law fit did not converge: {err}") from None
    resid = y - f(x, a, b, c)
    # back to raw sizes: a * (n/scale)^-b = (a * scale^b) * n^-b
    return PowerLaw(a=float(a * scale ** b), b=float(b), c=float(c),
                    residual_rms=float(np.sqrt(np.mean(resid ** 2))), n_points=int(n.size))
