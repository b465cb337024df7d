"""The recipe's items: given splits kept, a single file split by a seed, stable ids, the OOM policy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fixtures import SLM  # noqa: E402

from fairtrial.recipes.toolcall.data import read_items  # noqa: E402
from fairtrial.recipes.toolcall.params import DataParams, oom_policy  # noqa: E402

pytestmark = pytest.mark.skipif(not SLM.exists(), reason="shared data not at hand")


def test_given_splits_are_kept_and_ids_are_stable():
    dp = DataParams.model_validate({"toolcall": str(SLM / "toolcall")})
    items, splits = read_items(dp)
    parts = {p: sum(1 for i in items if i["part"] == p) for p in ("train", "valid", "eval")}
    assert parts == {"train": 300, "valid": 60, "eval": 50}
    assert splits[0]["name"] == "toolcall: given"
    again, _ = read_items(dp)
    assert [i["id"] for i in items] == [i["id"] for i in again]
    assert items[0]["id"].startswith("toolcall/train:") and len({i["id"] for i in items}) == 410


def test_one_file_is_split_by_the_seed_and_equal_prompts_stay_together(tmp_path):
    f = tmp_path / "all.jsonl"
    lines = (SLM / "toolcall" / "train.jsonl").read_text().splitlines()
    f.write_text("\n".join(lines + lines[:5]) + "\n")     # 5 prompts twice (other ids: repeats)
    dp = DataParams.model_validate({"toolcall": str(f), "split_seed": 3})
    items, splits = read_items(dp)
    assert splits[0]["seed"] == 3 and splits[0]["reproducible"]
    side = {}
    for i in items:
        side.setdefault(i["prompt"], set()).add(i["part"])
    assert all(len(s) == 1 for s in side.values())
    assert [i["id"] for i in read_items(dp)[0]] == [i["id"] for i in items]
    other = read_items(DataParams.model_validate({"toolcall": str(f), "split_seed": 4}))[0]
    assert {i["id"] for i in other if i["part"] == "eval"} != \
        {i["id"] for i in items if i["part"] == "eval"}


def test_a_missing_file_stem_names_the_files_there():
    dp = DataParams.model_validate({"toolcall": str(SLM / "toolcall"), "eval_file": "tset"})
    with pytest.raises(ValueError, match=r"data.eval_file = 'tset': no .*tset.jsonl \(the folder's "
                                         r".jsonl files: eval100, test, train, val\)"):
        read_items(dp)


def test_no_track_and_a_missing_path_are_refused():
    with pytest.raises(ValueError, match="give at least one track"):
        DataParams.model_validate({})
    with pytest.raises(ValueError, match="data path /nope does not exist"):
        DataParams.model_validate({"toolcall": "/nope"})


def test_oom_policy_halves_the_micro_batch_and_keeps_the_effective_batch():
    got = oom_policy({"train": {"micro_batch": 4, "grad_accum": 2}})
    assert got["train"] == {"micro_batch": 2, "grad_accum": 4}
    assert oom_policy({"train": {"micro_batch": 1}}) is None
