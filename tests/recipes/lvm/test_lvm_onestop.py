"""prepare + windows on the real OneStopEnglish corpus (../shared/data beside the repository)."""

import pyarrow.parquet as pq
import pytest

from fairtrial.recipes.lvm import RECIPE
from fairtrial.recipes.testing import StageRunner
from lvm_helpers import SHARED_DATA

ONESTOP = SHARED_DATA / "onestopenglish"


@pytest.mark.skipif(not ONESTOP.is_dir(), reason="shared data not beside the repository")
def test_onestopenglish_split_by_topic_and_windows(tmp_path):
    c = StageRunner(RECIPE, tmp_path, {"data": str(ONESTOP), "train_fraction": 0.3333})
    s = c.run("prepare")
    # 189 topics; two Ele texts recur verbatim under another topic ("WNL Arctic Ramadan" is
    # "Arctic mapping", "Skydiver" is "Royal Baby"), which joins those topics: 187 groups
    assert s["documents"] == 567 and s["groups"] == 187 and s["group_by"] == "group"
    docs = pq.read_table(c.dirs["prepare"] / "documents.parquet").to_pandas()
    assert docs.key.nunique() == 189 and (docs.groupby("key").size() == 3).all()
    assert (docs.groupby("group").split.nunique() == 1).all()  # a topic's 3 levels together
    assert sorted(docs.groupby("group").size().value_counts().items()) == [(3, 185), (6, 2)]
    joined = docs[docs.group != docs.key].set_index("doc_id").group.to_dict()
    assert joined == {f"{lv}/{t}": g for lv in ("Ele", "Int", "Adv") for t, g in
                      (("WNL Arctic Ramadan", "Arctic mapping"), ("Skydiver", "Royal Baby"))}
    assert docs.split.value_counts().to_dict() == {"train": 396, "test": 114, "valid": 57}
    counts = c.run("windows")
    assert counts["train_groups"] == 44 and counts["train_groups_all"] == 131  # ceil(131/3)
    assert counts["test_windows"] > 3000 and counts["train_windows"] > 3000
    # verbatim repeats across topics exist but are rare, and are counted
    assert counts["test_units_seen_in_train"] < 0.01 * counts["test_units_distinct"]
