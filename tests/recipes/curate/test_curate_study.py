"""curate part 1 through the real engine and CLI: a study with no trained arm yet runs and its
report shows the funnel, the contamination found and the sizes of the arms' training sets."""

import json
import re
from pathlib import Path

DATA = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data").resolve()

STUDY = f"""\
name = "curate_tiny"
question = "Does a curated set beat a random one of the same size?"
recipe = "curate"
replicates = [0]
control = "random"

[endpoint]
metric = "accuracy"

[params]
on_error = "skip"
distill = false                      # part 1 only: part 2's stages are skipped
sources = [
  {{ name = "train", path = "gsm8k/train.jsonl", format = "gsm8k", limit = 200 }},
  {{ name = "leak", path = "{DATA}/gsm8k/test_socratic.jsonl", format = "gsm8k", limit = 10 }},
  {{ name = "hermes", path = "hermes-fc/val.jsonl", format = "hermes-fc" }},
  {{ name = "local", path = "local.jsonl", format = "instruction", prompt_field = "prompt", response_field = "completion" }},
]
eval_sets = [{{ name = "test", path = "gsm8k/test.jsonl", format = "gsm8k", limit = 100 }}]
language = {{ candidates = ["en", "de", "fr"] }}
select = {{ size = 80, arms = ["curated", "random", "dedup_only"] }}

[[arms]]
name = "curated"
train_set = "curated"

[[arms]]
name = "random"
train_set = "random"
"""


def test_curation_study_runs_and_reports_the_funnel(cli, tmp_path):
    (tmp_path / "local.jsonl").write_text(
        json.dumps({"prompt": "Write one sentence about rivers and why they matter.",
                    "completion": "Rivers carry water, silt and life across a land."}) + "\n{not json\n")
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    cli("check", study, check=0)
    first = cli("run", study, "--quiet", check=0, timeout=240)
    # 5 shared, 5 skipped per arm, and the reference stage (skipped; one run for both arms)
    assert re.search(r"\b16 run", first.stdout), first.stdout
    rep = cli("report", study, check=0)
    assert "No verdict: no item scores yet" in rep.stdout
    md = (tmp_path / "ws" / "studies" / "curate_tiny" / "report.md").read_text()
    assert "## Curation funnel" in md and "| dedup | removed: contamination |" in md
    assert "10 training samples duplicate an evaluation item" in md
    assert "## Training sets of the arms" in md and "| curated | 80 |" in md
    assert "local.jsonl: line 2: not valid JSON" in md   # the skipped row, named
    js = json.loads(cli("report", study, "--json", check=0).stdout)
    secs = {s["title"]: s for s in js["sections"]}
    assert js["verdict"] == "none" and "Curation funnel" in secs
    html = (tmp_path / "ws" / "studies" / "curate_tiny" / "report.html").read_text()
    assert "Samples kept after each stage" in html and "data:image/png;base64" in html
    again = cli("run", study, "--quiet", check=0)
    assert re.search(r"\b0 run", again.stdout) and re.search(r"\b16 cached", again.stdout)


def test_example_study_checks(cli):
    example = Path(__file__).resolve().parents[3] / "examples" / "curate_gsm8k.toml"
    p = cli("check", example, check=0, timeout=300)
    assert "valid" in p.stdout and "recipe curate" in p.stdout
