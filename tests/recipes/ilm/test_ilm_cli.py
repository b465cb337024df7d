"""The ilm recipe the way a user meets it: `fairtrial check`, `run`, `report` and `infill` through the
CLI, on real CEFR-SP sentences (its dev file from ../shared/data), with a tiny model."""

import json
from pathlib import Path

import pytest

CEFR_DEV = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cefr-sp" / "wikiauto_dev.tsv"

STUDY = """\
name = "ilm_tiny"
question = "Does a B-level ILM beat a general one on B-level sentences?"
recipe = "ilm"
replicates = [0, 1]
control = "general"

[endpoint]
metric = "infill_ppl"
secondary = ["context_ppl"]

[decision]
min_effect = 0.05
effect = "relative"

[params]
data = {{ source = "{data}", format = "cefr-sp" }}
tokenizer = {{ vocab_size = 400 }}
masking = {{ n_masks = 2, workers = 1 }}
testset = {{ max_docs = 40, workers = 1 }}
model = {{ n_layer = 1, n_embd = 32, n_head = 2, n_positions = 128 }}
train = {{ steps = 20, micro_batch = 16, precision = "fp32", eval_every = 10, checkpoint_every = 10 }}

[[arms]]
name = "general"
train_level = "all"

[[arms]]
name = "B-specialist"
train_level = ["B1", "B2"]

[analysis]
own_eval_set = {{ "B-specialist" = "B1" }}
"""


@pytest.mark.slow
@pytest.mark.skipif(not CEFR_DEV.exists(), reason="../shared/data/cefr-sp is not beside the project")
def test_tiny_ilm_study_runs_reports_and_infills(cli, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(data=CEFR_DEV))
    cli("check", study, check=0)
    run = json.loads(cli("run", study, "--json", check=0, timeout=600).stdout)
    assert run["ok"] and run["failed"] == [] and run["run"] == run["stage_runs"]

    rep = json.loads(cli("report", study, "--json", check=0, timeout=300).stdout)
    assert rep["verdict"] in ("supported", "refuted", "inconclusive")
    # the cross-evaluation matrix: both models on every level's test set, the gain on the own level
    cx = rep["cross_eval"]
    assert sorted(cx["arms"]) == ["B-specialist", "general"]
    assert sorted(cx["eval_sets"]) == ["A1", "A2", "B1", "B2", "C1", "C2"]
    assert [(g["arm"], g["eval_set"]) for g in cx["gains"]] == [("B-specialist", "B1")]
    assert all(len(g["rel_ci"]) == 2 for g in cx["gains"])
    # the unigram baseline is scored for each model on each level
    assert {(b["arm"], b["reference"]) for b in rep["baselines"]} == {
        ("general", "baseline:unigram"), ("B-specialist", "baseline:unigram")}
    assert len({b["eval_set"] for b in rep["baselines"] if b["metric"] == "infill_ppl"}) == 6
    md = (tmp_path / "ws" / "studies" / "ilm_tiny" / "report.md").read_text()
    assert md.splitlines()[0].strip()  # the verdict line
    assert any(v in md.splitlines()[0].lower() for v in ("supported", "refuted", "inconclusive"))

    # the cross-evaluation: every trained model scored on every level's test set
    st = json.loads(cli("status", "--json", check=0).stdout)["studies"][0]
    train_keys = [k for k, r in st["runs"].items() if r["stage"] == "train"]
    assert len(train_keys) == 4  # 2 arms x 2 seeds

    out = json.loads(cli("infill", train_keys[0][:10], "She _ to school every _ .", "--seed", "3",
                         "--json", check=0).stdout)
    assert len(out) == 1 and len(out[0]["answers"]) == 2
    assert "_" not in out[0]["text"] and out[0]["text"].startswith("She")
    again = json.loads(cli("infill", train_keys[0][:10], "She _ to school every _ .", "--seed",
                           "3", "--json", check=0).stdout)
    assert again == out  # seeded sampling is reproducible
    cli("infill", "nosuchkey", "She _ .", check=2)
