"""Planning: cache keys, sharing, and what a changed param reruns."""

from __future__ import annotations

from fairtrial.plan import plan_for
from fairtrial.spec import load_spec
from tests.conftest import study_text


def test_shared_stages_collapse(make_study):
    plan = plan_for(load_spec(make_study()))
    by_stage = {}
    for n in plan.nodes.values():
        by_stage.setdefault(n.stage, []).append(n)
    # source: one for everyone; work: one per seed (effect is not a work param); score: per cell
    assert len(by_stage["source"]) == 1
    assert len(by_stage["work"]) == 2
    assert len(by_stage["score"]) == 4
    assert len(plan.cells) == 2 * 2 * 3


def test_changing_one_arm_param_changes_exactly_affected_keys(make_study):
    a = plan_for(load_spec(make_study()))
    b = plan_for(load_spec(make_study(better="steps = 3", name="b.toml")))
    changed = {k for k in a.cells if a.cells[k] != b.cells[k]}
    assert changed == {("better", s, st) for s in (0, 1) for st in ("work", "score")}


def test_keys_are_deterministic_and_seeded(make_study):
    a = plan_for(load_spec(make_study()))
    b = plan_for(load_spec(make_study(name="again.toml")))
    assert a.cells == b.cells
    assert a.cells[("base", 0, "work")] != a.cells[("base", 1, "work")]
    assert a.cells[("base", 0, "source")] == a.cells[("base", 1, "source")]


def test_input_file_digest_enters_key(make_study, tmp_path):
    from fairtrial.base.digests import DigestCache

    f = tmp_path / "data.txt"
    f.write_text("one")
    p = make_study(params='data = "data.txt"')
    d = DigestCache(None)
    k1 = plan_for(load_spec(p), d).cells[("base", 0, "source")]
    f.write_text("two")
    k2 = plan_for(load_spec(p), DigestCache(None)).cells[("base", 0, "source")]
    assert k1 != k2


def test_downstream(make_study):
    plan = plan_for(load_spec(make_study()))
    src = plan.cells[("base", 0, "source")]
    assert len(plan.downstream(src)) == 2 + 4
