"""Pairwise judging (`fairtrial.recipes.curate.judge`): both orders, flips counted apart, errors
retried then counted, the judge never a contestant, the documented prompt, the reference judge."""

from __future__ import annotations

import math

import pytest

from fairtrial.recipes.curate import judge as j
from fairtrial.stats.intervals import wilson


class Scripted:
    """A judge that answers from a function of the game; counts its calls."""

    name = "scripted"

    def __init__(self, fn):
        self.fn, self.calls, self.games = fn, 0, 0

    def verdicts(self, games):
        self.calls += 1
        self.games += len(games)
        return [self.fn(g) for g in games]


def test_the_documented_prompt_and_placeholder_checks():
    assert j.check_prompt(j.PAIRWISE_PROMPT) == ("answer_a", "answer_b", "question")
    with pytest.raises(j.JudgeError, match=r"missing placeholder\(s\) \{answer_b\}"):
        j.check_prompt("Q: {question}\nA: {answer_a}\nwhich is better?")
    with pytest.raises(j.JudgeError, match=r"unknown placeholder\(s\) \{answer_c\}"):
        j.check_prompt("{question} {answer_a} {answer_b} {answer_c}")
    with pytest.raises(j.JudgeError, match="not a format string"):
        j.check_prompt("{question} {answer_a} {answer_b} {")
    assert "reference" in j.check_prompt("{question} {answer_a} {answer_b} gold: {reference}")
    with pytest.raises(j.JudgeError, match="missing placeholder"):
        j.LLMJudge(lambda m: [], name="x", template="rate {question}")


@pytest.mark.parametrize("text,verdict", [
    ("Answer A is right.\nVerdict: A", "A"), ("verdict = b", "B"), ("Verdict: TIE.", "tie"),
    ("[[A]]", "A"), ("Verdict: [[B]]", "B"), ("B", "B"), ("Verdict: A ... no, Verdict: B", "B"),
    ("both are fine", None), ("Verdict: C", None), ("", None),
])
def test_parse_verdict(text, verdict):
    assert j.parse_verdict(text) == verdict


@pytest.mark.parametrize("first,second,outcome", [
    ("win", "win", "win"), ("loss", "loss", "loss"), ("tie", "tie", "tie"),
    ("win", "tie", "win"), ("tie", "win", "win"), ("loss", "tie", "loss"),
    ("win", "loss", "inconsistent"), ("loss", "win", "inconsistent"),
    (None, "win", "error"), ("tie", None, "error"),
])
def test_combine(first, second, outcome):
    assert j.combine(first, second) == outcome


def pairs_of(judge, n=4, **kw):
    ids = [f"p{i}" for i in range(n)]
    return j.judge_pairs(judge, ids, [f"q{i}" for i in range(n)], [f"good {i}" for i in range(n)],
                         [f"bad {i}" for i in range(n)], **kw)


def test_both_orders_and_a_position_biased_judge():
    fair = Scripted(lambda g: "A" if g.answer_a.startswith("good") else "B")
    pairs = pairs_of(fair)
    assert fair.games == 8 and [p.outcome for p in pairs] == ["win"] * 4
    assert {(p.first, p.second) for p in pairs} == {("win", "win")}
    biased = Scripted(lambda g: "A")  # always prefers the first answer shown
    pairs = pairs_of(biased)
    assert [p.outcome for p in pairs] == ["inconsistent"] * 4
    s = j.summarize(pairs)
    assert s.counts["inconsistent"] == 4 and math.isnan(s.win_rate)
    assert s.win_rate_inconsistent_as_tie == 0.5  # the sensitivity: flips as ties
    assert s.position_consistency == 0.0 and s.position_consistency_interval == wilson(0, 4)


def test_errors_are_retried_then_counted_never_dropped():
    tries: dict[str, int] = {}

    def flaky(g):
        key = g.question + g.answer_a
        tries[key] = tries.get(key, 0) + 1
        if g.question == "q0":
            return None                           # never readable
        if g.question == "q1" and tries[key] == 1:
            return None                           # readable on the retry
        return "A" if g.answer_a.startswith("good") else "B"

    judge = Scripted(flaky)
    pairs = pairs_of(judge, retries=2)
    assert [p.outcome for p in pairs] == ["error", "win", "win", "win"]
    assert judge.calls == 3 and judge.games == 8 + 4 + 2  # only failed games asked again
    assert tries["q0good 0"] == 3 and tries["q1good 1"] == 2 and tries["q2good 2"] == 1
    s = j.summarize(pairs)
    assert s.n == 4 and s.counts["error"] == 1 and s.judged == 3 and s.win_rate == 1.0
    assert math.isnan(pairs[0].score) and pairs[0].first is None


def test_summary_hand_computed():
    P = j.PairResult
    pairs = [P("a", "win", "win", "win"), P("b", "win", "tie", "win"), P("c", "tie", "tie", "tie"),
             P("d", "loss", "loss", "loss"), P("e", "win", "loss", "inconsistent"),
             P("f", None, "win", "error")]
    s = j.summarize(pairs)
    assert s.counts == {"win": 2, "tie": 1, "loss": 1, "inconsistent": 1, "error": 1}
    assert s.win_rate == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert s.win_rate_inconsistent_as_tie == pytest.approx((1 + 1 + 0.5 + 0 + 0.5) / 5)
    # consistent: a, c, d (b's two verdicts differ, e flips; f has no verdict)
    assert s.judged == 5 and s.position_consistency == pytest.approx(3 / 5)
    assert s.position_consistency_interval == wilson(3, 5)
    lo, hi = s.win_rate_interval
    assert 0 <= lo <= s.win_rate <= hi <= 1 and lo < hi
    assert [p.score for p in pairs[:4]] == [1.0, 1.0, 0.5, 0.0]


def test_llm_judge_formats_the_prompt_and_counts_failures():
    seen = []

    def complete(batch):
        seen.extend(batch)
        return ["Verdict: A" if "[Answer A]\ngood" in m[0]["content"] else "Verdict: B"
                for m in batch]

    judge = j.LLMJudge(complete, name="m")
    assert [p.outcome for p in pairs_of(judge, 2)] == ["win", "win"]
    assert "[Question]\nq0" in seen[0][0]["content"] and "{" not in seen[0][0]["content"]

    def down(batch):
        raise ConnectionError("endpoint down")

    judge = j.LLMJudge(down, name="m")
    pairs = pairs_of(judge, 2, retries=1)
    assert [p.outcome for p in pairs] == ["error", "error"]
    assert judge.errors == ["ConnectionError: endpoint down"] * 2
    with pytest.raises(j.JudgeError, match="uses \\{reference\\} but no reference"):
        pairs_of(j.LLMJudge(complete, name="m",
                            template="{question}{answer_a}{answer_b}{reference}"), 1)


def test_the_judge_must_not_be_a_contestant():
    assert j.judge_findings("judge-8b", ["student", "teacher-70b"]) == []
    found = j.judge_findings("Teacher-70B", ["student", "teacher-70b "])
    assert len(found) == 1 and "is also a contestant" in found[0]


def test_pairs_must_line_up():
    with pytest.raises(j.JudgeError, match="2 prompt ids, 2 questions, 1 candidate"):
        j.judge_pairs(Scripted(lambda g: "A"), ["a", "b"], ["q", "q"], ["x"], ["y", "z"])


@pytest.fixture(scope="module")
def minilm():
    from fairtrial.ml.embed import load_encoder

    try:
        return load_encoder("all-MiniLM-L6-v2")
    except ValueError as e:
        pytest.skip(f"the packaged MiniLM is not available: {e}")


def test_reference_judge_with_minilm(minilm):
    judge = j.ReferenceJudge(minilm, margin=0.02)
    gold = ["The capital of France is Paris.", "Water boils at 100 degrees Celsius at sea level."]
    cand = ["Paris is the capital city of France.", "Bananas are a yellow fruit."]
    other = ["Bananas are a yellow fruit.", "At sea level, water boils at 100 C."]
    pairs = j.judge_pairs(judge, ["p0", "p1"], ["capital?", "boiling?"], cand, other,
                          references=gold)
    assert [p.outcome for p in pairs] == ["win", "loss"]
    assert all(p.first == p.second for p in pairs)  # symmetric: position-consistent
    same = j.judge_pairs(judge, ["p"], ["q"], ["Paris."], ["Paris."], references=gold[:1])
    assert same[0].outcome == "tie"
    with pytest.raises(j.JudgeError, match="needs a reference answer"):
        j.judge_pairs(judge, ["p"], ["q"], ["a"], ["b"])
    with pytest.raises(j.JudgeError, match="margin must be in"):
        j.ReferenceJudge(minilm, margin=-1)


def test_complete_adapters_for_a_local_model_and_an_endpoint(monkeypatch):
    def fake_generate(model, tok, prompts, *, max_new_tokens, temperature, batch_size):
        assert temperature == 0.0 and max_new_tokens == 16
        return ["Verdict: A" if "[Answer A]\ngood" in p[0]["content"] else "Verdict: B"
                for p in prompts]

    monkeypatch.setattr("fairtrial.ml.causal_lm.generate.generate", fake_generate)
    local = j.LLMJudge(j.local_complete(None, None, max_new_tokens=16), name="local")
    assert [p.outcome for p in pairs_of(local, 3)] == ["win"] * 3

    class Client:  # what fairtrial.ml.endpoint.ChatClient.complete answers
        def complete(self, messages, **gen):
            assert gen == {"max_tokens": 8}
            return {"text": "Verdict: tie", "finish_reason": "stop", "model": "m"}

    remote = j.LLMJudge(j.endpoint_complete(Client(), max_concurrency=2, max_tokens=8),
                        name="remote")
    assert [p.outcome for p in pairs_of(remote, 3)] == ["tie"] * 3
