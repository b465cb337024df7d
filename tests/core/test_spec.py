"""The study file: every bad input gives a one-line error naming file, line and key, exit 2."""

from __future__ import annotations

import pytest

from fairtrial.errors import UserError
from fairtrial.spec import SpecError, load_spec
from tests.conftest import study_text


def errors_of(path) -> str:
    with pytest.raises(SpecError) as e:
        load_spec(path)
    return str(e.value)


def test_valid_study_expands_arms_and_defaults(make_study):
    spec = load_spec(make_study(params="sleep = 0.1"))
    assert [a.name for a in spec.arms] == ["base", "better"]
    assert spec.arm("better").params["effect"] == 0.5
    assert spec.arm("base").params["sleep"] == 0.1
    assert spec.arm("base").params["micro_batch"] == 8  # recipe default filled in
    assert spec.direction == "higher"
    assert spec.name == "study"


def test_grid_expands_cartesian_product_with_names(make_study):
    p = make_study(extra='\n[grid]\nsteps = [1, 2]\nlevel = ["A1", "B1"]\nname = "s{steps}-{level}"\n')
    spec = load_spec(p)
    assert [a.name for a in spec.arms] == ["base", "better", "s1-A1", "s1-B1", "s2-A1", "s2-B1"]
    assert spec.arm("s2-B1").params["steps"] == 2


def test_malformed_toml_names_the_line(make_study):
    p = make_study('question = "x"\nrecipe = "_test"\nreplicates = [0, 1\n')
    msg = errors_of(p)
    assert msg.startswith("study.toml:")
    assert "malformed TOML" in msg


def test_unknown_top_level_key(make_study):
    p = make_study("bogus = 3\n" + study_text())
    msg = errors_of(p)
    line = p.read_text().splitlines().index("bogus = 3") + 1
    assert f"study.toml:{line}: bogus: unknown key" in msg


def test_unknown_arm_key_and_level_error_are_located(make_study):
    text = study_text(better='level = "D1"\nbogus_param = 1')
    p = make_study(text)
    lines = text.splitlines()
    msg = errors_of(p)
    l_level = lines.index('level = "D1"') + 1
    l_bogus = lines.index("bogus_param = 1") + 1
    assert f'study.toml:{l_level}: arms[1].level: unknown level "D1"; known: A1, A2, B1, B2, C1' in msg
    assert f"study.toml:{l_bogus}: arms[1].bogus_param: unknown key" in msg
    assert len(msg.splitlines()) == 2  # every error at once, one per line


def test_wrong_type(make_study):
    p = make_study(params='steps = "many"')
    msg = errors_of(p)
    assert "params.steps" in msg and "integer" in msg


def test_empty_grid(make_study):
    msg = errors_of(make_study(extra="\n[grid]\n"))
    assert "grid: empty grid" in msg


def test_control_not_an_arm(make_study):
    msg = errors_of(make_study(study_text().replace('control = "base"', 'control = "nope"')))
    assert 'study.toml:4: control: control "nope" is not an arm; arms: base, better' in msg


def test_duplicate_arm_names(make_study):
    text = study_text().replace('name = "better"', 'name = "base"')
    msg = errors_of(make_study(text))
    assert 'duplicate arm name "base"' in msg and "arms[1].name" in msg


def test_seeds_must_be_integers(make_study):
    msg = errors_of(make_study(study_text().replace("[0, 1]", '[0, "one"]')))
    assert "study.toml:3: replicates: seeds must be integers" in msg


def test_missing_data_path(make_study):
    msg = errors_of(make_study(params='data = "no/such/file.csv"'))
    assert "params.data: data path no/such/file.csv does not exist" in msg


def test_unknown_recipe_suggests(make_study):
    msg = errors_of(make_study(study_text().replace('recipe = "_test"', 'recipe = "_tset"')))
    assert 'unknown recipe "_tset"; did you mean "_test"?' in msg


def test_unknown_metric_and_wrong_direction(make_study):
    text = study_text().replace('metric = "score"', 'metric = "scroe"')
    assert 'unknown metric "scroe"' in errors_of(make_study(text))
    text = study_text().replace('metric = "score"', 'metric = "score"\ndirection = "lower"')
    assert "is \"higher\" is better" in errors_of(make_study(text, name="b.toml"))


def test_missing_file():
    with pytest.raises(UserError, match="no such study file"):
        load_spec("/nonexistent/study.toml")


def test_cli_check_exit_codes(cli, make_study):
    good = make_study()
    p = cli("check", good, check=0)
    assert "valid" in p.stdout and "source" in p.stdout
    bad = make_study("bogus = 1\n" + study_text(), name="bad.toml")
    p = cli("check", bad, check=2)
    assert "bad.toml:" in p.stderr and "Traceback" not in p.stderr + p.stdout
