"""fairtrial.ml.schedule: one warm-up + decay function; each recipe keeps its own numbers."""

import math

import pytest
import torch

from fairtrial.ml.schedule import lambda_lr, lr_factor


def test_ilm_schedules():
    """ilm: int(warmup_frac * total) warm-up steps, decay to min_lr_frac."""
    f = [lr_factor(s, 100, 10, "cosine", 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1, abs=0.01)
    assert all(x >= y for x, y in zip(f[10:], f[11:]))  # decays monotonically
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)  # the floor at the end
    assert lr_factor(50, 100, 0, "linear", 0.0) == pytest.approx(0.5)
    assert {lr_factor(s, 100, 0, "constant") for s in range(100)} == {1.0}
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(50, 100, 0, "step")


def test_lvm_schedule_is_the_old_hand_written_one():
    """lvm's numbers before fairtrial.ml: at least one warm-up step, cosine to 10% of the peak."""
    def old(step, total, warmup_frac):
        warmup = max(1, int(warmup_frac * total))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    for total, frac in [(30, 0.0), (30, 0.2), (7, 0.5), (1, 0.0)]:
        warm = max(1, int(frac * total))
        assert [lr_factor(s, total, warm, "cosine", 0.1) for s in range(total + 1)] == \
            [old(s, total, frac) for s in range(total + 1)]


def test_transformers_gives_the_same_curve_only_without_warm_up():
    """Why the function is hand-written (see the module doc): transformers' cosine with a floor
    equals it without warm-up, but warms up from 0 where ours starts at 1 / warmup."""
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    def curve(make, total):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt)
        out = []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    for warm in (0, 5):
        ours = curve(lambda o, w=warm: lambda_lr(o, 50, w, "cosine", 0.1), 50)
        theirs = curve(lambda o, w=warm: get_cosine_with_min_lr_schedule_with_warmup(
            o, num_warmup_steps=w, num_training_steps=50, min_lr_rate=0.1), 50)
        if warm == 0:
            assert ours == pytest.approx(theirs, abs=1e-12)
        else:
            assert theirs[0] == 0.0 and ours[0] == pytest.approx(1 / warm)
