"""curate part 1: every bad input of the issue gets a clear error or a counted skip, and nothing
half-written is left behind."""

import json

import pytest
from pydantic import ValidationError

from fairtrial.recipes.api import StageError
from fairtrial.recipes.curate import RECIPE
from fairtrial.recipes.curate.params import CurateParams
from fairtrial.recipes.testing import StageRunner

GOOD = {"instruction": "Name a colour of the sky on a clear day.", "output": "Blue."}


def _src(path, **kw):
    return {"name": "mine", "path": str(path), "format": "instruction", **kw}


def _collect(tmp_path, params):
    run = StageRunner(RECIPE, tmp_path / "run", params)
    return run, run.run("collect")


def test_malformed_rows_skipped_and_counted(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes((json.dumps(GOOD) + "\n{broken\n" + json.dumps({"instruction": "x"}) + "\n"
                   + '{"instruction": "caf\xe9", "output": "y"}\n'.encode("latin-1").decode("latin-1")
                   ).encode("latin-1"))
    run, summary = _collect(tmp_path, {"sources": [_src(f)], "on_error": "skip"})
    assert summary["out"] == 1 and summary["removed"] == {"malformed": 3}
    skipped = json.loads((run.dirs["collect"] / "skipped.json").read_text())
    assert [(s["line"], s["reason"].split(" (")[0]) for s in skipped] == [
        (2, "not valid JSON"), (3, "no field 'output'"), (4, "not UTF-8")]
    assert all(s["file"] == str(f) for s in skipped)
    funnel = json.loads((run.dirs["collect"] / "funnel.json").read_text())
    assert funnel["in"] == {"mine": 4} and funnel["removed"] == {"malformed": {"mine": 3}}


def test_malformed_row_fatal_names_file_and_line_and_writes_nothing(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(GOOD) + "\n{broken\n")
    with pytest.raises(StageError, match=r"params.sources\[0\] \(mine\): .*a.jsonl: line 2: not valid JSON"):
        _collect(tmp_path, {"sources": [_src(f)]})
    assert not list((tmp_path / "run" / "collect").glob("*"))   # nothing half-written


def test_non_utf8_fatal(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(json.dumps(GOOD).encode() + b'\n{"instruction": "caf\xe9", "output": "y"}\n')
    with pytest.raises(StageError, match=r"a.jsonl: line 2: not UTF-8 \(byte 0xe9"):
        _collect(tmp_path, {"sources": [_src(f)]})


def test_unknown_field_lists_the_fields(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"q": "What is two plus two, written out?", "a": "Four."}) + "\n")
    with pytest.raises(StageError, match=r"no row has the field 'question'; the first row's fields "
                                         r"are: 'q', 'a'"):
        _collect(tmp_path, {"sources": [_src(f, prompt_field="question", response_field="a")],
                            "on_error": "skip"})


def test_empty_source_and_missing_path(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    with pytest.raises(StageError, match=r"empty.jsonl: empty file"):
        _collect(tmp_path, {"sources": [_src(f)], "on_error": "skip"})
    with pytest.raises(StageError, match=r"nope.jsonl: no such file or folder"):
        _collect(tmp_path, {"sources": [_src(tmp_path / "nope.jsonl")]})
    with pytest.raises(StageError, match=r"params.sources is empty"):
        _collect(tmp_path, {})


@pytest.mark.parametrize("over, match", [
    ({"dedup": {"threshold": 0}}, r"dedup.threshold = 0.0 is outside \(0, 1\]"),
    ({"dedup": {"threshold": 1.2}}, r"dedup.threshold = 1.2 is outside \(0, 1\]"),
    ({"quality": {"max_copy": -0.1}}, r"quality.max_copy = -0.1 is outside \(0, 1\]"),
    ({"dedup": {"num_perm": 128, "bands": 48}}, r"not a multiple of dedup.bands = 48"),
    ({"language": {"language": "english"}}, r"'english' is not an ISO 639-1 code"),
    ({"quality": {"min_prompt_tokens": 9, "max_prompt_tokens": 3}}, r"min_prompt_tokens = 9 exceeds"),
    ({"sources": [{"name": "a", "path": "x", "format": "gsm8k", "prompt_field": "q"}]},
     r"format 'gsm8k' does not take prompt_field"),
    ({"sources": [{"name": "a", "path": "x", "format": "gsm8k"}],
      "eval_sets": [{"name": "a", "path": "y", "format": "gsm8k"}]}, r"repeated: a"),
])
def test_bad_params(over, match):
    with pytest.raises(ValidationError, match=match):
        CurateParams.model_validate(over)


def test_select_size_larger_than_a_pool(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("".join(json.dumps({"instruction": f"Question number {k} about the weather today?",
                                     "output": f"Answer {k}."}) + "\n" for k in range(12)))
    run = StageRunner(RECIPE, tmp_path / "run", {"sources": [_src(f)], "select": {"size": 50},
                                                 "language": {"candidates": ["en", "de"]}})
    with pytest.raises(StageError, match=r"select.size = 50 is larger than the pool of arm curated"):
        run.upto("select")
