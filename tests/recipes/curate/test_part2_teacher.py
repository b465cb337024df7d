"""The teacher block (`fairtrial.recipes.curate.teacher`): answers cached per item and resumed,
with the generation call replaced by a recorder (the real model path is tests/ml/test_endpoint.py
and the ML layer's generate tests); who-plays-which-part findings."""

from __future__ import annotations

import pytest

from fairtrial.ml.endpoint import read_answers
from fairtrial.recipes.curate import teacher

ITEMS = [(f"id{i}", [{"role": "user", "content": f"question {i}"}]) for i in range(7)]


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake_generate(model, tok, prompts, *, max_new_tokens, temperature, top_p, seed,
                      batch_size):
        seen.append(([p[-1]["content"] for p in prompts], seed))
        return [f"answer to {p[-1]['content']}" for p in prompts]

    monkeypatch.setattr("fairtrial.ml.causal_lm.generate.generate", fake_generate)
    return seen


def test_local_teacher_caches_per_item_and_resumes(calls, tmp_path):
    path = tmp_path / "teacher.jsonl"
    out = teacher.teach_local(None, None, ITEMS[:3], path, batch_size=2, seed=10)
    assert [b for b, _ in calls] == [["question 0", "question 1"], ["question 2"]]
    assert [s for _, s in calls] == [10, 12]  # seed + index of the batch's first item
    assert out["id2"]["text"] == "answer to question 2" and list(read_answers(path)) == \
        ["id0", "id1", "id2"]
    calls.clear()
    progress = []
    out = teacher.teach_local(None, None, ITEMS, path, batch_size=2, seed=10,
                              progress=lambda d, t: progress.append((d, t)))
    assert [b for b, _ in calls] == [["question 3", "question 4"], ["question 5", "question 6"]]
    assert list(out) == [i for i, _ in ITEMS] and progress == [(5, 7), (7, 7)]
    calls.clear()
    teacher.teach_local(None, None, ITEMS, path)
    assert calls == [] and len(path.read_text().splitlines()) == 7


def test_duplicate_ids_are_refused(calls, tmp_path):
    with pytest.raises(ValueError, match="item ids must be unique; 1 repeat"):
        teacher.teach_local(None, None, ITEMS[:2] + ITEMS[:1], tmp_path / "t.jsonl")


def test_role_findings():
    assert teacher.role_findings(teacher="llama-70b", judge="qwen-72b", students=["s"]) == []
    found = teacher.role_findings(teacher="Llama-70B", judge="llama-70b", students=["llama-70b"])
    assert len(found) == 2 and "also the teacher" in found[0] and "contestant" in found[1]
    assert teacher.role_findings(teacher="t", judge=None) == []
