"""The part 2 study files pass `fairtrial check`, with the arms, seeds and endpoints the issue asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["curate_distill.toml", "curate_distill_gpu.toml"])
def test_distill_examples_pass_fairtrial_check(cli, name):
    p = cli("check", REPO / "examples" / name, check=0, timeout=300)
    assert "valid" in p.stdout and "control: random" in p.stdout


def test_distill_examples_declare_the_issues_design():
    from fairtrial.spec import load_spec

    cpu = load_spec(REPO / "examples" / "curate_distill.toml")
    gpu = load_spec(REPO / "examples" / "curate_distill_gpu.toml")
    for spec in (cpu, gpu):
        arms = {a.name: a.params for a in spec.arms}
        assert {a: p["train_set"] for a, p in arms.items()} == {"curated": "curated",
                                                                 "random": "random"}
        assert spec.replicates == [0, 1, 2] and spec.endpoint.metric == "accuracy"
        assert "judged_win" in spec.endpoint.secondary
        p = arms["curated"]
        assert p["distill"] and not p["merge"]["allow_failed_check"] and p["merge"]["prompts"] >= 64
        assert p["evaluate"]["k"] <= p["evaluate"]["samples"]
    c = {a.name: a.params for a in cpu.arms}["curated"]
    assert c["student"]["name"] == "smollm2-135m" and c["judge"]["kind"] == "reference"
    assert c["teacher"]["model"] is None and c["teacher"]["endpoint"] is None
    g = {a.name: a.params for a in gpu.arms}["curated"]
    assert g["teacher"]["endpoint"]["api_key_env"] == "TEACHER_API_KEY"
    assert g["judge"]["kind"] == "llm"
    assert g["judge"]["endpoint"]["model"] != g["teacher"]["endpoint"]["model"]
