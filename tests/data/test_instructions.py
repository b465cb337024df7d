"""Instruction readers: the real files as found, ids, and every kind of bad input with a located message."""

import json
from pathlib import Path

import pytest

from fairtrial.data.instructions import (
    digest,
    read_gsm8k,
    read_hermes_fc,
    read_instruction_jsonl,
    read_instructions,
    read_sharegpt,
    read_slm_swap,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k_real_and_test_socratic_shares_questions():
    train = read_gsm8k(DATA / "gsm8k" / "train.jsonl")
    assert len(train) == 7473 and not train.skipped
    assert len({r.id for r in train}) == 7473
    r = train[0]
    assert r.source == "gsm8k/train" and r.line == 1 and r.id.startswith("gsm8k/train:")
    assert r.prompt.startswith("Natalia sold clips") and r.response.endswith("#### 72")
    assert [t["role"] for t in r.turns] == ["user", "assistant"]
    test = read_gsm8k(DATA / "gsm8k" / "test.jsonl")
    socratic = read_gsm8k(DATA / "gsm8k" / "test_socratic.jsonl")
    assert {r.prompt for r in test} == {r.prompt for r in socratic}  # the real cross-source duplicates
    assert not ({r.id for r in test} & {r.id for r in socratic})  # ids carry their source
    again = read_gsm8k(DATA / "gsm8k" / "test.jsonl")
    assert [r.id for r in again] == [r.id for r in test]  # stable across reads


def test_slm_swap_folder_and_file():
    tc = read_slm_swap(DATA / "slm-swap" / "toolcall")
    assert len(tc) == 510 and {r.source for r in tc} == {f"toolcall/{s}" for s in
                                                         ("train", "val", "test", "eval100")}
    assert all(r.response.startswith("<tool_call name=") for r in tc)
    st = read_slm_swap(DATA / "slm-swap" / "structured" / "train.jsonl", source="structured")
    assert len(st) == 300 and all(json.loads(r.response)["tool_name"] for r in st)
    assert st[0].id.startswith("structured:")


def test_hermes_fc_keeps_turns_system_and_repeated_rows():
    rows = read_hermes_fc(DATA / "hermes-fc")
    assert len(rows) == 200 and len({r.id for r in rows}) == 200
    r = rows[0]
    assert [t["role"] for t in r.turns] == ["system", "user", "assistant"]
    assert r.turns[1]["from"] == "human" and r.turns[2]["from"] == "gpt"
    assert "<tools>" in r.system and r.response.lstrip().startswith("<tool_call>")
    assert r.prompt == r.turns[1]["content"]
    assert r.meta["category"] and "conversations" not in r.meta
    # upstream repeats four rows verbatim under the same id: kept, marked, found later by dedup
    repeated = [r for r in rows if "~" in r.id]
    assert len(repeated) == 4 and all(r.meta["repeats_line"] < r.line for r in repeated)


def test_ids_digest_same_prompt_different_response_and_exact_repeats(tmp_path):
    f = _write(tmp_path / "a.jsonl", [
        {"instruction": "Say hi", "output": "hi"},
        {"instruction": "Say hi", "output": "hello"},
        {"instruction": "Say hi", "output": "hi"},
        {"instruction": "Add", "input": "2 and 3", "output": "5"},
    ])
    rows = read_instruction_jsonl(f, source="s")
    ids = [r.id for r in rows]
    assert ids[0] == "s:" + digest("", "Say hi", "hi") and ids[1] != ids[0]
    assert ids[2] == ids[0] + "~2"
    assert rows[3].prompt == "Add\n\n2 and 3"
    assert rows[3].line == 4 and rows[3].file == str(f)


def test_instruction_id_and_system_fields(tmp_path):
    f = _write(tmp_path / "b.jsonl", [
        {"key": 7, "q": "Q1", "a": "A1", "sys": "be brief", "lang": "en"},
        {"key": 8, "q": "Q2", "a": "A2"},
    ])
    rows = read_instructions(f, "instruction", prompt_field="q", input_field=None, response_field="a",
                             id_field="key", system_field="sys")
    assert [r.id for r in rows] == [f"{tmp_path.name}/b:7", f"{tmp_path.name}/b:8"]
    assert rows[0].system == "be brief" and rows[0].turns[0] == {"role": "system", "content": "be brief"}
    assert rows[0].meta == {"lang": "en"} and rows[1].system == ""


def test_sharegpt_role_content_multi_turn(tmp_path):
    f = _write(tmp_path / "c.jsonl", [
        {"conversations": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                           {"role": "user", "content": "U2"}, {"role": "assistant", "content": "A1"},
                           {"role": "tool", "content": "T"}, {"role": "assistant", "content": "A2"}]},
    ])
    r = read_sharegpt(f)[0]
    assert (r.system, r.prompt, r.response) == ("S", "U1\n\nU2", "A1")
    assert len(r.turns) == 6 and r.turns[4]["role"] == "tool"


@pytest.mark.parametrize("line, match", [
    ("{not json", r"line 2: not valid JSON"),
    ("[1, 2]", r"line 2: expected a JSON object, found list"),
    ('{"instruction": "x", "output": ""}', r"line 2: field 'output' \(the response\) is empty"),
    ('{"instruction": 3, "output": "y"}', r"line 2: field 'instruction' \(the prompt\) is int"),
    ('{"instruction": "x"}', r"line 2: no field 'output' \(the response\); the row has: 'instruction'"),
])
def test_malformed_rows_fatal_or_skipped(tmp_path, line, match):
    f = tmp_path / "m.jsonl"
    f.write_text('{"instruction": "a", "output": "b"}\n' + line + '\n{"instruction": "c", "output": "d"}\n')
    with pytest.raises(ValueError, match=f"m.jsonl: {match}"):
        read_instruction_jsonl(f)
    got = read_instruction_jsonl(f, on_error="skip")
    assert [r.line for r in got] == [1, 3]
    assert len(got.skipped) == 1 and got.skipped[0].line == 2 and got.skipped[0].file == str(f)
    assert __import__("re").search(match.split(": ", 1)[1], got.skipped[0].reason)


def test_non_utf8_named_and_skippable(tmp_path):
    f = tmp_path / "n.jsonl"
    f.write_bytes(b'{"prompt": "ok", "completion": "fine"}\n{"prompt": "caf\xe9", "completion": "x"}\n')
    with pytest.raises(ValueError, match=r"n.jsonl: line 2: not UTF-8 \(byte 0xe9"):
        read_slm_swap(f)
    got = read_slm_swap(f, on_error="skip")
    assert len(got) == 1 and "not UTF-8" in got.skipped[0].reason


def test_wrong_field_name_lists_fields_even_when_skipping(tmp_path):
    f = _write(tmp_path / "w.jsonl", [{"question": "q", "answer": "a"}, {"question": "q2", "answer": "a2"}])
    for mode in ("raise", "skip"):
        with pytest.raises(ValueError, match=r"w.jsonl: no row has the field 'instruction'; "
                                             r"the first row's fields are: 'question', 'answer'"):
            read_instruction_jsonl(f, on_error=mode)
    g = _write(tmp_path / "g.jsonl", [{"id": 1, "talk": []}])
    with pytest.raises(ValueError, match=r"no row has the field 'conversations'.*'id', 'talk'"):
        read_sharegpt(g, on_error="skip")


def test_empty_file_all_bad_missing_path_and_bad_options(tmp_path):
    e = tmp_path / "e.jsonl"
    e.write_text("")
    with pytest.raises(ValueError, match=r"e.jsonl: empty file"):
        read_gsm8k(e, on_error="skip")
    b = tmp_path / "b.jsonl"
    b.write_text("nope\nnope\n")
    with pytest.raises(ValueError, match=r"b.jsonl: every row is bad \(2 skipped\); first: .*line 1"):
        read_gsm8k(b, on_error="skip")
    with pytest.raises(ValueError, match=r"no such file or folder"):
        read_gsm8k(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=r"on_error must be one of raise, skip"):
        read_gsm8k(DATA / "gsm8k" / "test.jsonl", on_error="ignore")
    with pytest.raises(ValueError, match=r"unknown instruction format 'alpaca'; known: instruction"):
        read_instructions(e, "alpaca")
    with pytest.raises(ValueError, match=r"format 'gsm8k' takes no field names"):
        read_instructions(e, "gsm8k", prompt_field="q")
    d = tmp_path / "emptydir"
    d.mkdir()
    with pytest.raises(ValueError, match=r"emptydir: no .jsonl files"):
        read_sharegpt(d)


@pytest.mark.parametrize("conv, match", [
    ([{"from": "human", "value": "hi"}], "no assistant turn"),
    ([{"from": "system", "value": "s"}, {"from": "gpt", "value": "a"}], "no user turn before"),
    ([{"from": "alien", "value": "x"}], "turn 1: unknown role 'alien'"),
    ([{"speaker": "human", "text": "x"}], "turn 1 lacks 'role' or 'content'; it has: 'speaker', 'text'"),
    ("hello", "is not a non-empty list of turns"),
])
def test_sharegpt_bad_conversations(tmp_path, conv, match):
    f = _write(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "q"},
                                                         {"from": "gpt", "value": "a"}]},
                                      {"conversations": conv}])
    with pytest.raises(ValueError, match=f"s.jsonl: line 2: .*{match}"):
        read_sharegpt(f)
    assert len(read_sharegpt(f, on_error="skip").skipped) == 1


def test_repeated_id_with_different_content_is_a_bad_row(tmp_path):
    f = _write(tmp_path / "h.jsonl", [
        {"id": "x", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"id": "x", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "b"}]},
    ])
    with pytest.raises(ValueError, match=r"h.jsonl: line 2: id 'x' repeats line 1 with different content"):
        read_hermes_fc(f)
