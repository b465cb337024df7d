"""`fairtrial import --outputs`: raw outputs of external systems scored by the recipe's own scorer;
an evaluation-only toolcall study of two systems with unequal coverage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _fixtures import SLM  # noqa: E402

pytestmark = pytest.mark.skipif(not SLM.exists(), reason="shared data not at hand")

STUDY = f"""\
question = "Does API system b beat API system a on tool calls and structured JSON?"
recipe = "toolcall"
external_arms = ["api-a", "api-b"]
control = "api-a"

[params.data]
toolcall = "{SLM / 'toolcall'}"
structured = "{SLM / 'structured'}"
max_eval = 20

[endpoint]
metric = "f1"
secondary = ["f1_tolerant"]

[analysis]
targets = {{ args_f1 = 0.744, field_f1 = 0.602 }}

[decision]
min_effect = 0.0
effect = "absolute"
"""


def _eval_items():
    from fairtrial.recipes.toolcall.data import read_items
    from fairtrial.recipes.toolcall.params import DataParams

    dp = DataParams.model_validate({"toolcall": str(SLM / "toolcall"),
                                    "structured": str(SLM / "structured"), "max_eval": 20})
    return [i for i in read_items(dp)[0] if i["part"] == "eval"]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def systems(tmp_path):
    items = _eval_items()
    # a: every answer right, every third in a markdown fence (strict 0, tolerant 1), by item id
    a = [{"item_id": i["id"], "output": i["completion"] if k % 3 else
          "```json\n" + i["completion"] + "\n```"} for k, i in enumerate(items)]
    # b: right and bare, identified by the exact prompt, but 5 toolcall items lack an output
    lacking = [i["id"] for i in items if i["track"] == "toolcall"][-5:]
    b = [{"prompt": i["prompt"], "output": i["completion"]} for i in items
         if i["id"] not in lacking]
    return {"a": _write(tmp_path / "a.jsonl", a), "b": _write(tmp_path / "b.jsonl", b),
            "lacking": lacking, "items": items}


def test_two_external_systems_with_unequal_coverage(cli, make_study, systems):
    study = make_study(STUDY)
    cli("check", study, check=0)
    out_a = json.loads(cli("import", study, systems["a"], "--arm", "api-a", "--outputs",
                           "--json", check=0).stdout)
    assert out_a["outputs"]["missing"] == 0 and out_a["outputs"]["scored"] == 40
    p = cli("import", study, systems["b"], "--arm", "api-b", "--outputs", check=0)
    assert "5 of the 40 evaluation items have no output" in p.stdout
    rep = json.loads(cli("report", study, "--json", "--resamples", 500, check=0).stdout)
    codes = {f["code"]: f for f in rep["findings"]}
    assert "missing_items" in codes and "eval_digest_mismatch" not in codes
    comps = {(c["arm"], c["eval_set"]): c for c in rep["comparisons"]}
    tc = comps[("api-b", "toolcall")]
    assert tc["n_items"] == 15                      # compared on the shared items only
    # strict: a's fenced answers score 0; b (bare) beats a; tolerant: equal
    exp_a = sum(1 for k, i in enumerate(systems["items"])
                if i["track"] == "toolcall" and k % 3 and i["id"] not in systems["lacking"]) / 15
    assert tc["mean_reference"] == pytest.approx(exp_a)
    assert tc["mean_arm"] == pytest.approx(1.0)
    md = (Path(cli.tmp) / "ws" / "studies" / "study" / "report.md").read_text()
    assert "### Missing items" in md and "Decision tree" in md


@pytest.mark.parametrize("rows,message", [
    ([{"item_id": "toolcall/test:nope", "output": "x"}],
     r"b\.jsonl:1: item_id 'toolcall/test:nope' is no evaluation item"),
    ([{"item_id": "ID", "output": "x"}, {"item_id": "ID", "output": "y"}],
     r"b\.jsonl:2: item ID has a second output"),
    ([{"item_id": "ID", "output": "  "}], r"b\.jsonl:1: the output is empty"),
    ([{"prompt": "no such prompt", "output": "x"}],
     r"b\.jsonl:1: the prompt matches no evaluation item"),
    ([{"item_id": "ID"}], r"b\.jsonl:1: no output text"),
])
def test_bad_outputs_files_name_the_row(tmp_path, systems, rows, message):
    from fairtrial.recipes.toolcall.integrity import score_outputs

    iid = systems["items"][0]["id"]
    rows = [{k: (iid if v == "ID" else v) for k, v in r.items()} for r in rows]
    path = _write(tmp_path / "b.jsonl", rows)
    params = {"data": {"toolcall": str(SLM / "toolcall"), "structured": str(SLM / "structured"),
                       "max_eval": 20}}
    lines = list(enumerate((json.loads(x) for x in path.read_text().splitlines()), start=1))
    with pytest.raises(ValueError, match=message.replace("ID", iid)):
        score_outputs(params, lines, str(path))


def test_cli_refuses_an_unknown_id_without_importing(cli, make_study, tmp_path, systems):
    study = make_study(STUDY)
    bad = _write(tmp_path / "bad.jsonl", [{"item_id": "nope", "output": "x"}])
    p = cli("import", study, bad, "--arm", "api-a", "--outputs")
    assert p.returncode != 0
    assert "bad.jsonl:1: item_id 'nope' is no evaluation item" in p.stderr + p.stdout
    assert not list((tmp_path / "ws").rglob("item_scores.parquet"))


def test_relative_data_paths_are_read_from_the_study_files_folder(systems):
    from fairtrial.recipes.toolcall.integrity import score_outputs

    base = SLM.parent                                     # the study file's folder, say
    params = {"data": {"toolcall": "slm-swap/toolcall", "max_eval": 20}}
    iid = next(i["id"] for i in systems["items"] if i["track"] == "toolcall")
    ref = next(i["completion"] for i in systems["items"] if i["id"] == iid)
    rows, info = score_outputs(params, [(1, {"item_id": iid, "output": ref})], "o.jsonl",
                               base_dir=base)
    assert info["items"] == 20 and info["scored"] == 1 and info["missing"] == 19
    assert {r["value"] for r in rows if r["metric"] == "f1"} == {1.0}
