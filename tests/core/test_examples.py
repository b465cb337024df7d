"""The study files in examples/ are valid as shipped: `fairtrial check` accepts each one (the
EFCAMDAT study once its data path points at a CSV of that corpus's format)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside the project")
@pytest.mark.parametrize("name", ["cefr_specialization", "onestop_specialization",
                                  "lvm_data_scaling"])
def test_example_study_checks(cli, name):
    p = cli("check", EXAMPLES / f"{name}.toml", check=0, timeout=300)
    assert "valid" in p.stdout


def test_efcamdat_study_names_its_missing_data_then_checks(cli, tmp_path):
    text = (EXAMPLES / "efcamdat_specialization.toml").read_text()
    study = tmp_path / "efcamdat_specialization.toml"
    study.write_text(text)
    p = cli("check", study, check=2)  # the CSV is not on this machine: bad input, not a crash
    assert "efcamdat.csv" in p.stderr and "neither an existing file" in p.stderr
    rows = ["writing_id,l1,cefr_level,text"]
    for i in range(400):
        level = ["A1", "A2", "B1", "B2", "C1"][i % 5]
        rows.append(f'{i},{["Arabic", "German"][i % 2]},{level},"Text {i} about my day at {level}."')
    csv = tmp_path / "efcamdat.csv"
    csv.write_text("\n".join(rows) + "\n")
    study.write_text(text.replace("/data/efcamdat/efcamdat.csv", str(csv)))
    assert "valid" in cli("check", study, check=0).stdout
