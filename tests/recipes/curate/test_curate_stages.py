"""curate part 1: the stage chain on small slices of the real data, and nothing removed comes back."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fairtrial.recipes.curate import RECIPE
from fairtrial.recipes.curate.dedup import norm_key
from fairtrial.recipes.curate.funnel import report_sections
from fairtrial.recipes.testing import StageRunner

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
LANG = {"candidates": ["en", "de", "fr", "es"]}   # a short list: loads in a second


def _params(tmp_path, **over):
    """GSM8K train (300), test (as training: duplicates of the eval set), test_socratic (same
    questions: cross-source duplicates), slm-swap toolcall, hermes-fc, a German file; eval: test."""
    de = tmp_path / "de.jsonl"
    de.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in [
        ("Wie viele Äpfel hat Anna, wenn sie zwei Körbe mit je fünf Äpfeln kauft?", "Sie hat zehn Äpfel."),
        ("Erkläre bitte kurz, warum der Himmel am Tag blau aussieht.", "Wegen der Rayleigh-Streuung."),
        ("Schreibe einen kurzen Satz über das Wetter in Berlin heute.", "Heute ist es in Berlin sonnig."),
    ]))
    p = {
        "sources": [
            {"name": "gsm8k-train", "path": str(DATA / "gsm8k" / "train.jsonl"), "format": "gsm8k", "limit": 300},
            {"name": "gsm8k-test-copy", "path": str(DATA / "gsm8k" / "test.jsonl"), "format": "gsm8k", "limit": 20},
            {"name": "gsm8k-socratic", "path": "gsm8k/test_socratic.jsonl", "format": "gsm8k", "limit": 60},
            {"name": "toolcall", "path": str(DATA / "slm-swap" / "toolcall" / "train.jsonl"), "format": "slm-swap", "limit": 100},
            {"name": "hermes", "path": str(DATA / "hermes-fc" / "train.jsonl"), "format": "hermes-fc"},
            {"name": "german", "path": str(de), "format": "instruction", "prompt_field": "prompt",
             "response_field": "completion"},
        ],
        "eval_sets": [{"name": "gsm8k-test", "path": str(DATA / "gsm8k" / "test.jsonl"), "format": "gsm8k",
                       "limit": 40}],
        "language": LANG,
        "select": {"size": 150, "seed": 3},
    }
    p.update(over)
    return p


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    run = StageRunner(RECIPE, root / "run", _params(root))
    run.upto("select")
    return run


def _ids(run, stage, name="verdicts.parquet", kept=True):
    t = pq.read_table(run.dirs[stage] / name).to_pylist()
    return {r["id"] for r in t if r.get("kept", True) == kept}


def test_funnel_counts_chain_and_sources(chain):
    f = {s: json.loads((chain.dirs[s] / "funnel.json").read_text()) for s in
         ("collect", "quality", "language", "dedup", "select")}
    assert sum(f["collect"]["out"].values()) == 300 + 20 + 60 + 100 + 100 + 3
    for a, b in (("collect", "quality"), ("quality", "language"), ("language", "dedup")):
        assert f[a]["out"] == f[b]["in"], (a, b)   # each stage reads exactly what the last kept
    for s in ("quality", "language", "dedup"):
        removed = sum(sum(by.values()) for by in f[s]["removed"].values())
        assert sum(f[s]["in"].values()) - removed == sum(f[s]["out"].values()), s
    assert f["language"]["removed"]["other_language"] == {"german": 3}
    # the eval slice is test questions 1..40: the 20 copied into training and the first 40
    # socratic twins (same questions, other answers: a real cross-source duplicate) are contamination
    assert f["dedup"]["removed"]["contamination"] == {"gsm8k-test-copy": 20, "gsm8k-socratic": 40}
    # hermes-fc train: 100 rows, 91 distinct normalised prompts (3 rows repeated verbatim upstream)
    assert f["dedup"]["removed"]["exact"] == {"hermes": 9}


def test_nothing_removed_comes_back(chain):
    removed_q = _ids(chain, "quality", kept=False)
    removed_l = _ids(chain, "language", kept=False)
    dd = pq.read_table(chain.dirs["dedup"] / "removed_pipeline.parquet").to_pylist()
    removed_d = {r["id"] for r in dd}
    kept_d = _ids(chain, "dedup", "verdicts_pipeline.parquet")
    curated = {r["id"] for r in pq.read_table(chain.dirs["select"] / "arms" / "curated.parquet").to_pylist()}
    assert curated <= kept_d
    assert not (curated & (removed_q | removed_l | removed_d))
    assert not (kept_d & (removed_q | removed_l))
    # every representative is a kept sample (or an evaluation item): no cluster is emptied
    eval_ids = {r["id"] for r in pq.read_table(chain.dirs["collect"] / "eval.parquet").to_pylist()}
    for r in dd:
        if r["rule"] == "contamination":
            assert r["representative"] in eval_ids
        else:
            assert r["representative"] in kept_d, r
    # no exact duplicate (after normalisation) survives, and no evaluation prompt
    samples = {r["id"]: r for r in pq.read_table(chain.dirs["collect"] / "samples.parquet").to_pylist()}
    keys = [norm_key(samples[i]["prompt"]) for i in kept_d]
    assert len(keys) == len(set(keys))
    ev = pq.read_table(chain.dirs["collect"] / "eval.parquet").to_pylist()
    assert not set(keys) & {norm_key(r["prompt"]) for r in ev}


def test_arms_equal_size_and_budget(chain):
    sets = json.loads((chain.dirs["select"] / "sets.json").read_text())
    assert set(sets) == {"curated", "random", "quality_only", "language_only", "dedup_only"}
    assert {s["size"] for s in sets.values()} == {150}
    budget = sets["curated"]["token_budget"]
    assert budget == min(s["tokens"] for s in sets.values() if s["swaps"] == 0)
    assert all(budget * 0.99 <= s["tokens"] <= budget * 1.01 for s in sets.values())
    for arm, s in sets.items():
        t = pq.read_table(chain.dirs["select"] / "arms" / f"{arm}.parquet")
        assert t.num_rows == 150 and sum(t["tokens"].to_pylist()) == s["tokens"]
    eval_keys = {norm_key(r["prompt"]) for r in pq.read_table(chain.dirs["collect"] / "eval.parquet").to_pylist()}
    rnd = pq.read_table(chain.dirs["select"] / "arms" / "random.parquet").to_pylist()
    assert not {norm_key(r["prompt"]) for r in rnd} & eval_keys   # contamination out of every arm
    # seeded: the same seed gives the same random arm
    again = StageRunner(RECIPE, chain.root / "again", chain.params, dirs={k: chain.dirs[k] for k in
                                                                          ("collect", "quality", "language", "dedup")})
    again.run("select")
    assert pq.read_table(again.dirs["select"] / "arms" / "random.parquet")["id"].to_pylist() == [r["id"] for r in rnd]


def test_report_sections(chain):
    secs = report_sections(chain.dirs, chain.params)
    titles = [s["title"] for s in secs]
    assert titles[0] == "Curation funnel" and "Training sets of the arms" in titles
    funnel = secs[0]["table"]
    total = funnel["header"].index("total")
    read = next(r for r in funnel["rows"] if r[1] == "read")
    assert read[total] == 583
    cont = next(s for s in secs if s["title"] == "Contamination and duplicates")
    assert cont["text"].startswith("60 training samples")   # 20 copies + 40 socratic twins
