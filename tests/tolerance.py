"""Tolerances for comparing floats with a fixture written on another machine.

A fixture of floats (tests/ml/fixtures/loss_curves.json) was computed once, on one processor. The
same code on another x86 processor runs other kernels: oneDNN and the BLAS pick AVX2, AVX-512 or
AMX code paths at run time, which sum in other orders and, under autocast, round the low-precision
products at other points. Results then differ in the last bits of the compute dtype, and training
carries every step's difference into the next. So a fixture test never asks for bit equality; it
asks for what the computation can promise:

    relative tolerance = eps(compute dtype) x number of optimizer steps

where eps is the dtype's machine epsilon (the spacing of floats at 1.0: fp32 2^-23, bf16 2^-7,
fp16 2^-10). One step's result differs from another machine's by a few units in the last place of
the dtype the matrix products round to; a step moves the weights by a small fraction of their size,
so over n steps the curves drift apart by at most about n such units (the tiny, well-conditioned
runs here are far from chaotic; the measured drift is well inside). Examples:

    fp32, 12 steps:  1.4e-6 relative (7e-6 on a loss of 5): tight
    fp16,  6 steps:  5.9e-3 relative

Measured on an AMD EPYC (torch's AVX2 kernels, MKL on AMD) against the fixture written on another
machine: fp32 runs at most 1.9e-7 relative (tolerance 9.5e-7 to 4.3e-6), the fp16 autocast run
1.5e-6 (tolerance 5.9e-3), where the former absolute 1e-6 failed.

Where bit equality matters (a resumed run equals an uninterrupted one, two batch layouts give the
same gradients), a test compares two runs made in the same test on the same machine, never a file.

Values computed in Python floats only (a learning-rate schedule) promise IEEE double arithmetic on
every machine: `PYTHON_FLOAT_RTOL`, a few ulps of float64 for libm's cos and exp.
"""

from __future__ import annotations

EPS = {"fp32": 2.0 ** -23, "bf16": 2.0 ** -7, "fp16": 2.0 ** -10}
PYTHON_FLOAT_RTOL = 1e-12


def training_rtol(precision: str, steps: int) -> float:
    """Relative tolerance for a training curve (losses, validation losses) after `steps` optimizer
    steps in `precision` ("fp32", "bf16", "fp16"; autocast's compute dtype), compared with a
    fixture written on another machine. See the module docstring for the reasoning."""
    if precision not in EPS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {sorted(EPS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return EPS[precision] * steps
