"""The move of the training code to fairtrial.ml changed structure, not results: for fixed seeds,
ilm's and lvm's training loss curves equal those of the code before the move.

The reference curves (fixtures/loss_curves.json) were written by `.venv/bin/python
tests/ml/_curves.py` on the pre-move code (the commit is recorded in the file), on one machine.
When the move was made they were equal float for float on that machine (torch 2.13 CPU, one
thread); on another processor the kernels differ, so the tolerance is what the computation can
promise across machines (tests/tolerance.py): losses and validation losses to
eps(compute dtype) x optimizer steps, relative (fp32, 12 steps: 1.4e-6; the fp16 autocast run,
6 steps: 5.9e-3), learning rates (Python floats) to 1e-12. The bit-exact properties of the loop
(resume equals an uninterrupted run) are tested by comparing two runs in one test
(tests/recipes/ilm/test_model_train.py, tests/recipes/lvm/test_lvm_training.py).
"""

import json
import math

import _curves as C  # tests/ml is on sys.path (rootdir-relative imports, no __init__.py)
import numpy as np
import pytest

from tests.tolerance import PYTHON_FLOAT_RTOL, training_rtol

REF = json.loads(C.FIXTURE.read_text())
RENAMED = {"valid_loss": "val_loss"}  # lvm's history key when the fixture was written


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from _model_fixtures import build_world

    return build_world(tmp_path_factory.mktemp("curves_world"))


@pytest.mark.parametrize("name", sorted(C.ILM_SCENARIOS))
def test_ilm_loss_curve_equals_the_pre_move_code(name, world, tmp_path):
    ref = REF["ilm"][name]
    got = C.run_ilm(name, tmp_path, world)
    assert got["data_digest"] == ref["data_digest"]  # the same examples, else nothing to compare
    rtol = training_rtol(ref["precision"], len(ref["loss"]))
    for key in ("loss", "lr", "valid_loss", "valid_infill_loss"):
        assert len(got[key]) == len(ref[key]), key
        np.testing.assert_allclose(got[key], ref[key], atol=0, err_msg=key,
                                   rtol=PYTHON_FLOAT_RTOL if key == "lr" else rtol)
    assert got["selected_step"] == ref["selected_step"]
    assert got["precision"] == ref["precision"]


@pytest.mark.parametrize("name", sorted(C.LVM_SCENARIOS))
def test_lvm_loss_curve_equals_the_pre_move_code(name, tmp_path):
    ref = REF["lvm"][name]
    got = C.run_lvm(name, tmp_path)
    assert [h["epoch"] for h in got["history"]] == [h["epoch"] for h in ref["history"]]
    rtol = training_rtol("fp32", C.lvm_steps(name, len(ref["history"])))
    for key in ("train_loss", "valid_loss", "lr"):
        old = key if key in ref["history"][0] else RENAMED[key]
        np.testing.assert_allclose([h[key] for h in got["history"]],
                                   [h[old] for h in ref["history"]], atol=0, err_msg=key,
                                   rtol=PYTHON_FLOAT_RTOL if key == "lr" else rtol)
    assert (got["best_epoch"], got["stopped_early"]) == (ref["best_epoch"], ref["stopped_early"])


def test_the_fixture_covers_what_it_claims():
    """The reference runs exercise warm-up, decay, dropout, fp16 loss scaling and validation, so
    equality above means something."""
    ilm = REF["ilm"]
    assert set(ilm) == set(C.ILM_SCENARIOS) and set(REF["lvm"]) == set(C.LVM_SCENARIOS)
    lr = ilm["bucketed_dropout"]["lr"]
    assert lr[0] < lr[2] and lr[-1] < lr[2]  # warm-up, then decay
    assert ilm["fp16_amp_on_cpu"]["precision"] == "fp16"
    for run in ilm.values():
        assert all(math.isfinite(x) for x in run["loss"]) and run["loss"][-1] < run["loss"][0]
    assert REF["commit"] and len(REF["commit"]) == 40
