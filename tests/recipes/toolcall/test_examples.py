"""The recipe's example study files are valid (`fairtrial check`), with the arms the issue asks for."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fixtures import SLM  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(not SLM.exists(), reason="shared data not at hand")


def test_api_swap_passes_fairtrial_check(cli):
    p = cli("check", REPO / "examples" / "toolcall_api_swap.toml", check=0)
    assert "valid" in p.stdout and "control: api" in p.stdout


@pytest.mark.parametrize("name", ["toolcall_cep.toml", "toolcall_api_swap.toml"])
def test_example_arms_and_targets(name):
    from fairtrial.spec import load_spec

    spec = load_spec(REPO / "examples" / name)
    arms = {a.name: a.params for a in spec.arms}
    assert set(arms) == {"base", "base-cep", "lora", "lora-cep"}
    assert not arms["base"]["train"]["adapter"] and arms["base"]["prompt"]["prefix"] == "none"
    assert arms["lora-cep"]["train"]["adapter"] and arms["lora-cep"]["prompt"]["prefix"] == "cep"
    assert spec.replicates == [0, 1, 2] and spec.endpoint.metric == "f1"
    assert spec.recipe.name == "toolcall"
