"""The toolcall recipe's parsers and scorer: every documented rule (docs/recipes/toolcall.md)."""

from __future__ import annotations

import json

import pytest

from fairtrial.recipes.toolcall import parsing as P
from fairtrial.recipes.toolcall import scoring as S
from fairtrial.recipes.toolcall.parsing import Call

REF_TC = '<tool_call name="get_weather">{"city": "Paris", "days": 3}</tool_call>'
REF_ST = json.dumps({"query": "Weather in Paris for 3 days", "tool_name": "get_weather",
                     "arguments": {"city": "Paris", "days": 3}})


def tc(text):
    return P.parse_strict("toolcall", text), P.parse_tolerant("toolcall", text)


# ---------------------------------------------------------------- parsers: toolcall
def test_strict_toolcall_reads_one_and_several_wrappers():
    p = P.parse_strict("toolcall", REF_TC)
    assert p.ok and p.value == [Call("get_weather", {"city": "Paris", "days": 3})]
    two = P.parse_strict("toolcall", REF_TC + "\n" + '<tool_call name="f">{}</tool_call>')
    assert [c.name for c in two.value] == ["get_weather", "f"]
    assert P.parse_strict("toolcall", "  " + REF_TC + "\n").ok      # surrounding whitespace


def test_strict_toolcall_body_may_hold_the_closing_tag_inside_a_string():
    p = P.parse_strict("toolcall", '<tool_call name="f">{"a": "x</tool_call>y"}</tool_call>')
    assert p.ok and p.value[0].arguments == {"a": "x</tool_call>y"}


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("```\n" + REF_TC + "\n```", "no <tool_call"),
    ("Sure! " + REF_TC, "no <tool_call"),
    (REF_TC + " done", "not another wrapper"),
    ('<tool_call name="f">{"a": 1,}</tool_call>', "not JSON"),
    ('<tool_call name="f">[1]</tool_call>', "array, not an object"),
    ('<tool_call name="f">{"a": 1}', "no </tool_call>"),
    ("<tool_call>\n{'arguments': {'a': 1}, 'name': 'f'}\n</tool_call>", "no <tool_call"),
    ("<tool_call name='f'>{}</tool_call>", "no <tool_call"),
])
def test_strict_toolcall_refuses_anything_else(text, why):
    p = P.parse_strict("toolcall", text)
    assert not p.ok and why in p.error


@pytest.mark.parametrize("text,repairs", [
    ("```xml\n" + REF_TC + "\n```", ["fence"]),
    ("```\n" + REF_TC, ["fence"]),                                       # unclosed fence
    ("Here you go:\n```\n" + REF_TC + "\n```\nHope it helps", ["fence", "prose"]),
    ("Sure! " + REF_TC + " Anything else?", ["prose"]),
    ('<tool_call name="get_weather">[{"city": "Paris", "days": 3}]</tool_call>', ["unwrap_list"]),
    ("<tool_call name=\"get_weather\">{'city': 'Paris', 'days': 3}</tool_call>",
     ["python_literal"]),
    ("<tool_call name='get_weather'>{\"city\": \"Paris\", \"days\": 3}</tool_call>",
     ["name_quotes"]),
    ('<tool_call name="get_weather">{"city": "Paris", "days": 3}', ["unclosed"]),
    ("<tool_call>\n{'arguments': {'city': 'Paris', 'days': 3}, 'name': 'get_weather'}\n"
     "</tool_call>", ["python_literal", "name_in_body"]),
])
def test_tolerant_toolcall_repairs_are_named_and_counted(text, repairs):
    strict, tol = tc(text)
    assert not strict.ok
    assert tol.ok, tol.error
    assert tol.value == [Call("get_weather", {"city": "Paris", "days": 3})]
    assert tol.repairs == repairs


def test_tolerant_passes_a_strict_answer_with_no_repairs_and_keeps_failures_failures():
    assert P.parse_tolerant("toolcall", REF_TC).repairs == []
    for bad in ("I cannot help with that.", '<tool_call name="f">{"a": {1, 2}}</tool_call>',
                "<tool_call name=\"f\">{'a': b'x'}</tool_call>", "<tool_call>{\"a\": 1}</tool_call>", "{}",
                "<tool_call name=\"f\">not json</tool_call>"):
        assert not P.parse_tolerant("toolcall", bad).ok, bad


# ---------------------------------------------------------------- parsers: structured
def test_structured_strict_and_tolerant():
    assert P.parse_strict("structured", REF_ST).ok
    for text, repairs in [("```json\n" + REF_ST + "\n```", ["fence"]),
                          ("The answer is " + REF_ST + ".", ["prose"]),
                          ("[" + REF_ST + "]", ["unwrap_list"]),
                          ("{'query': 'q', 'tool_name': 't', 'arguments': {}}",
                           ["python_literal"])]:
        assert not P.parse_strict("structured", text).ok
        tol = P.parse_tolerant("structured", text)
        assert tol.ok and tol.repairs == repairs, text
    assert not P.parse_strict("structured", "[1, 2]").ok
    # a list of two objects is not unwrapped, nor searched for an object inside it
    assert not P.parse_tolerant("structured", "[" + REF_ST + "," + REF_ST + "]").ok
    assert not P.parse_tolerant("structured", "no json here").ok
    # a broken object is not mined for the object nested inside it
    broken = '{"query": "q", "tool_name": "t", "arguments": {"a": 1} "x"}'
    assert not P.parse_tolerant("structured", broken).ok
    # a trailing comma is a Python literal: read, and counted as that repair
    comma = P.parse_tolerant("structured", '{"query": "q", "tool_name": "t", "arguments": {},}')
    assert comma.ok and comma.repairs == ["python_literal"]


def test_schema_validity():
    assert P.schema_valid(json.loads(REF_ST))
    assert not P.schema_valid({"query": "q", "tool_name": "t"})
    assert not P.schema_valid({"query": "q", "tool_name": "t", "arguments": {}, "x": 1})
    assert not P.schema_valid({"query": "q", "tool_name": "t", "arguments": []})
    assert not P.schema_valid({"query": 1, "tool_name": "t", "arguments": {}})


def test_unknown_track_is_an_error():
    with pytest.raises(ValueError, match="unknown track"):
        P.parse_strict("sql", "x")


# ---------------------------------------------------------------- coercion
@pytest.mark.parametrize("a,b,numeric,strings", [
    (5, 5.0, True, True),
    (5, "5", False, True),
    ("5.0", 5, False, True),
    (True, 1, False, False),
    ("true", True, False, False),
    ({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1.0, {"c": 2.0}]}}, True, True),   # every depth
    ([1, 2], [2, 1], False, False),
    ({"a": 1}, {"a": 1, "b": None}, False, False),
    ("Paris", "paris", False, False),
    (None, None, True, True),
    (None, "", False, False),
    ("1e3", 1000, False, True),
])
def test_equal_coercion(a, b, numeric, strings):
    assert S.equal(a, b) is numeric and S.equal(b, a) is numeric
    assert S.equal(a, b, strings=True) is strings and S.equal(b, a, strings=True) is strings


def test_leaves_and_field_f1():
    assert S.leaves({"a": {"b": [1, 2]}, "c": {}, "d": []}) == \
        {"a.b[0]": 1, "a.b[1]": 2, "c": {}, "d": []}
    ref = json.loads(REF_ST)
    assert S.field_f1(ref, ref) == 1.0
    pred = dict(ref, arguments={"city": "Paris", "days": "3", "unit": "C"})
    # leaves: query, tool_name, arguments.city, arguments.days (+ arguments.unit predicted)
    assert S.field_f1(pred, ref) == pytest.approx(2 * 4 / (5 + 4))
    assert S.field_f1({}, {}) == 1.0


# ---------------------------------------------------------------- matching and F1
def test_parallel_calls_are_matched_optimally_not_first_fit():
    ref = [Call("f", {"x": 1, "y": 2}), Call("f", {"x": 1, "y": 3})]
    # first-fit would pair pred[0] with ref[0] (both have x=1), leaving pred[1] with y=2 vs y=3
    pred = [Call("f", {"x": 1, "y": 3}), Call("f", {"x": 1, "y": 2})]
    assert S.match_calls(pred, ref) == [(0, 1), (1, 0)]
    assert S.call_match(pred, ref) and S.args_f1(pred, ref) == 1.0
    pred2 = [Call("f", {"x": 1}), Call("f", {"x": 1, "y": 2})]
    assert sorted(S.match_calls(pred2, ref)) == [(0, 1), (1, 0)]
    assert S.args_f1(pred2, ref) == pytest.approx(2 * 3 / (3 + 4))


def test_names_dominate_the_matching():
    ref = [Call("a", {"v": 1}), Call("b", {"v": 2})]
    pred = [Call("b", {"v": 1}), Call("a", {"v": 2})]
    assert S.match_calls(pred, ref) == [(0, 1), (1, 0)]
    assert S.args_f1(pred, ref) == 0.0


def test_args_f1_counts_unmatched_calls():
    ref = [Call("f", {"a": 1})]
    assert S.args_f1([Call("f", {"a": 1}), Call("g", {"b": 2})], ref) == pytest.approx(2 / 3)
    assert S.args_f1([], ref) == 0.0
    assert S.args_f1([Call("f", {})], [Call("f", {})]) == 1.0


# ---------------------------------------------------------------- items and error types
def _score(track, answer, ref_text, prompt=""):
    ref = S.reference_of(track, ref_text)
    return S.score_answer(track, answer, ref, S.declared_tools(prompt))


@pytest.mark.parametrize("answer,error", [
    (REF_TC, "ok"),
    ('<tool_call name="get_weather">{"city": "Paris", "days": 3.0}</tool_call>', "ok"),
    ('<tool_call name="get_weather">{"city": "Paris", "days": "3"}</tool_call>', "wrong_type"),
    ('<tool_call name="get_weather">{"city": "Rome", "days": 3}</tool_call>', "wrong_value"),
    ('<tool_call name="get_weather">{"city": "Paris"}</tool_call>', "missing_argument"),
    ('<tool_call name="get_weather">{"city": "Paris", "days": 3, "u": 1}</tool_call>',
     "extra_argument"),
    ('<tool_call name="weather">{"city": "Paris", "days": 3}</tool_call>', "wrong_name"),
    (REF_TC + REF_TC, "wrong_call_count"),
    ("no call", "unparseable"),
])
def test_toolcall_error_types(answer, error):
    assert _score("toolcall", answer, REF_TC)["strict"].error == error


def test_toolcall_item_metrics_strict_vs_tolerant():
    s = _score("toolcall", "```\n" + REF_TC + "\n```", REF_TC,
               "Tool signature: get_weather(city:str, days:int, optional)")
    assert s["strict"].metrics == dict.fromkeys(S.TOOLCALL_METRICS, 0.0)
    assert s["strict"].error == "unparseable"
    assert s["tolerant"].metrics == dict.fromkeys(S.TOOLCALL_METRICS, 1.0)
    assert s["tolerant"].repairs == ["fence"]
    t = _score("toolcall", '<tool_call name="get_weather">{"city": "Paris", "days": "3"}'
               "</tool_call>", REF_TC)["strict"].metrics
    assert t["args_f1"] == 1.0 and t["call_match"] == 0.0 and t["exact_match"] == 0.0
    assert t["tool_name_acc"] == 1.0


def test_call_validity_uses_the_declared_tools():
    prompt = "Tool signature: get_weather(city:str, days:int, optional)"
    ok = _score("toolcall", REF_TC, REF_TC, prompt)["strict"].metrics["call_valid"]
    extra = _score("toolcall", '<tool_call name="get_weather">{"city": "P", "zzz": 1}'
                   "</tool_call>", REF_TC, prompt)["strict"].metrics["call_valid"]
    other = _score("toolcall", '<tool_call name="nope">{}</tool_call>', REF_TC,
                   prompt)["strict"].metrics["call_valid"]
    assert (ok, extra, other) == (1.0, 0.0, 0.0)
    assert S.declared_tools("Tool signature: e(p:Tuple[float, float], q:int)") == \
        {"e": {"p", "q"}}
    assert S.declared_tools('Tool: f\nParameters: {\n  "a": {"type": "int"}\n}\n') == {"f": {"a"}}
    assert S.declared_tools("no tools here") is None


@pytest.mark.parametrize("obj,error", [
    ({"query": "Weather in Paris for 3 days", "tool_name": "get_weather",
      "arguments": {"city": "Paris", "days": 3}}, "ok"),
    ({"query": "Weather in Paris for 3 days", "tool_name": "get_weather"}, "schema_invalid"),
    ({"query": "Weather in Paris for 3 days", "tool_name": "weather",
      "arguments": {"city": "Paris", "days": 3}}, "wrong_name"),
    ({"query": "Weather", "tool_name": "get_weather",
      "arguments": {"city": "Paris", "days": 3}}, "wrong_query"),
    ({"query": "Weather in Paris for 3 days", "tool_name": "get_weather",
      "arguments": {"city": "Paris"}}, "missing_argument"),
    ({"query": "Weather in Paris for 3 days", "tool_name": "get_weather",
      "arguments": {"city": "Paris", "days": "3"}}, "wrong_type"),
])
def test_structured_error_types(obj, error):
    assert _score("structured", json.dumps(obj), REF_ST)["strict"].error == error


def test_structured_item_metrics():
    good = _score("structured", REF_ST, REF_ST)["strict"].metrics
    assert good == dict.fromkeys(S.STRUCTURED_METRICS, 1.0)
    half = _score("structured", json.dumps({"query": "Weather in Paris for 3 days",
                                             "tool_name": "get_weather", "arguments": {}}),
                  REF_ST)["strict"].metrics
    assert half["field_f1"] == pytest.approx(2 * 2 / (3 + 4))
    assert half["schema_valid"] == 1.0 and half["exact_match"] == 0.0 and "args_f1" not in half


def test_reference_not_in_the_track_format_is_refused():
    with pytest.raises(ValueError, match="no <tool_call"):
        S.reference_of("toolcall", "<tool_call>\n{'name': 'f', 'arguments': {}}\n</tool_call>")
    with pytest.raises(ValueError, match="not an object"):
        S.reference_of("structured", '[{"name": "f", "arguments": {}}]')
    with pytest.raises(ValueError, match="query, tool_name, arguments"):
        S.reference_of("structured", '{"name": "f", "arguments": {}}')


def test_every_shipped_reference_scores_one_against_itself():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" / "slm-swap"
    if not root.exists():
        pytest.skip("shared data not at hand")
    for track in P.TRACKS:
        for line in (root / track / "test.jsonl").read_text().splitlines():
            row = json.loads(line)
            s = _score(track, row["completion"], row["completion"], row["prompt"])
            assert s["strict"].error == "ok" and s["strict"].metrics["exact_match"] == 1.0


def test_the_scorer_never_raises_on_mangled_answers():
    import random

    rng = random.Random(0)
    alphabet = list('{}[]"\':,<>/ `\n\\') + ["<tool_call", "</tool_call>", 'name="f"', "```",
                                             "true", "None", "1e9", "-", "."]
    for track, ref_text in (("toolcall", REF_TC + REF_TC), ("structured", REF_ST)):
        ref = S.reference_of(track, ref_text)
        for _ in range(400):
            chars = list(ref_text)
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(chars) + 1)
                if rng.random() < 0.5 and chars:
                    del chars[min(pos, len(chars) - 1)]
                else:
                    chars.insert(pos, rng.choice(alphabet))
            for s in S.score_answer(track, "".join(chars), ref).values():
                assert all(0.0 <= v <= 1.0 for v in s.metrics.values())
                assert s.error in ("ok",) + S.ERROR_TYPES


def test_a_python_literal_answer_prints_no_python_warnings():
    """A model's `\\d` inside a single-quoted literal is read without Python's invalid-escape
    warning (printed to the user's terminal from Python 3.12 on)."""
    import warnings

    text = "{'query': 'digits \\d+', 'tool_name': 't', 'arguments': {}}"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = P.parse_tolerant("structured", text)
    assert got.ok and not seen, [str(w.message) for w in seen]
