"""The lvm recipe through the real engine and CLI: run, report, and a second run that is cached."""

import pytest

from lvm_helpers import write_corpus

STUDY = """\
name = "lvm_tiny"
question = "Does more data help the tiny next-vector models?"
recipe = "lvm"
replicates = [0, 1]

[endpoint]
metric = "mrr"
secondary = ["cosine"]

[decision]
compare = "all-pairs"

[analysis]
size_param = "train_fraction"
group_param = "arch"

[params]
data = "{data}"
embed = {{ model = "random:16" }}
window = {{ k = 3 }}
model = {{ hidden = 16, layers = 1, heads = 2 }}
train = {{ epochs = 2, batch_size = 16, threads = 1 }}

[grid]
arch = ["amn", "gru"]
train_fraction = [0.5, 1.0]
"""


@pytest.mark.slow
def test_tiny_study_runs_reports_and_caches(cli, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", n_topics=10)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(data=corpus))
    cli("check", study, check=0)
    first = cli("run", study, "--quiet", check=0, timeout=240)
    assert "22 run" in first.stdout  # 1 prepare, 1 embed, 2 windows, 2 baselines, 8 train, 8 eval
    cli("report", study, check=0)
    report = (tmp_path / "ws" / "studies" / "lvm_tiny" / "report.md").read_text()
    assert "mrr" in report.splitlines()[0]
    for system in ("copy_last", "mean_context", "ridge"):
        assert f"baseline:{system}" in report
    again = cli("run", study, "--quiet", check=0)
    assert "0 run" in again.stdout and "22 cached" in again.stdout
