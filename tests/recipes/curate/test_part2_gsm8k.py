"""GSM8K answer extraction (`fairtrial.recipes.curate.gsm8k`): every reference answer of the shared
data, hand-made hard cases, and the comparison with lm-evaluation-harness's own GSM8K filters."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "gsm8k"


from fairtrial.recipes.curate import gsm8k as g


def _rows(name: str) -> list[dict]:
    path = DATA / f"{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is missing (the shared data folder)")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_reference_answer_of_the_shared_data():
    train, test, socratic = _rows("train"), _rows("test"), _rows("test_socratic")
    assert (len(train), len(test), len(socratic)) == (7473, 1319, 1319)
    with_commas = 0
    for name, rows in (("train", train), ("test", test), ("test_socratic", socratic)):
        for i, row in enumerate(rows):
            answer = row["answer"]
            tail = answer.rsplit("####", 1)[1].strip()  # the reference, read independently
            assert re.fullmatch(r"-?\d{1,3}(,\d{3})*|-?\d+", tail), (name, i, tail)
            with_commas += "," in tail
            expected = str(int(tail.replace(",", "")))
            where = f"{name}.jsonl row {i + 1}"
            assert g.reference_answer(answer, where=where) == expected, where
            # a model that writes the reference solution verbatim is scored right
            assert g.extract(answer) == g.Extracted(expected, "marker"), where
            assert g.score(answer, answer) == 1.0 and g.score(answer, tail) == 1.0, where
    assert with_commas > 50  # thousands separators are really exercised (about 110 rows)


def test_reference_without_a_final_answer_is_named():
    with pytest.raises(ValueError, match="train.jsonl row 7: no '#### <number>'"):
        g.reference_answer("She has 5 apples.", where="train.jsonl row 7")


HARD = [
    # (model text, canonical answer or None, how)
    ("Janet makes 9 * 2 = $18 every day.\n#### 18", "18", "marker"),
    ("#### 18\nQuestion: next one ... #### 19", "18", "marker"),        # the first marker
    ("The answer is:\n####\nso 7", "7", "last"),                       # a marker with no number
    ("#### **$1,200.00**", "1200", "marker"),                          # markdown, currency, .00
    ("####18", "18", "marker"),
    ("#### The answer is 42.", "42", "marker"),
    ("He ends with -5 dollars.", "-5", "last"),
    ("It is \u22127 degrees.", "-7", "last"),                            # the Unicode minus
    ("He owes -$5.", "-5", "last"),
    ("He owes $-5.", "-5", "last"),
    ("pages 12-15", "15", "last"),                                       # a range, not a minus
    ("in 2019-2020 he saved 300", "300", "last"),
    ("16 - 3 - 4 = <<16-3-4=9>>9 eggs", "9", "last"),
    ("The total is 1,234,567.", "1234567", "last"),                      # thousands + a period
    ("The total is \u20ac 1,200", "1200", "last"),
    ("It costs \u00a318.50", "18.5", "last"),
    ("The answer is 18.0", "18", "last"),
    ("The answer is 25%.", "25", "last"),
    ("The answer is 25 %", "25", "last"),
    ("The answer is 3.5 hours.", "3.5", "last"),
    ("The answer is 18...", "18", "last"),
    ("It costs $.50", "0.5", "last"),                                   # a bare decimal
    ("3000 - 50 = 2950 songs on her mp3 player.", "2950", "last"),      # mp3 is a word
    ("0900-0130 = 0730 hours", "730", "last"),                          # a leading zero
    ("He picked 3,4,5 and then 6", "6", "last"),                         # a list, not thousands
    ("-0", "0", "last"),
    ("x2", None, "none"),                                                # inside a word
    ("I don't know.", None, "none"),
    ("", None, "none"),
]


@pytest.mark.parametrize("text,value,how", HARD)
def test_hard_cases(text, value, how):
    assert g.extract(text) == g.Extracted(value, how)


def test_scoring_counts_unparsed_as_wrong_and_compares_values():
    assert g.score("I don't know", "#### 18") == 0.0
    assert g.score("so 18.00 dollars", "18") == 1.0
    assert g.score("so 17", "#### 18") == 0.0
    assert g.score("#### 1,600", "#### 1,600") == 1.0
    assert [g.canonical(x) for x in ("$1,200.50", "18.", "-0.0", "1e3", "5 apples")] == \
        ["1200.5", "18", "0", None, None]


def test_prompts_zero_and_few_shot():
    rows = [{"question": f"q{i}", "answer": f"a <<1+{i}={1 + i}>>{1 + i}\n#### {1 + i}"}
            for i in range(10)]
    shots = g.few_shot(rows, 3, seed=0, exclude="q1")
    assert shots == g.few_shot(rows, 3, seed=0, exclude="q1") != g.few_shot(rows, 3, seed=1)
    assert "q1" not in [q for q, _ in shots] and all("<<" not in a for _, a in shots)
    msgs = g.prompt_messages("What is 2 + 2?", shots)
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert msgs[-1]["content"] == "What is 2 + 2?" and "####" in msgs[0]["content"]
    assert g.prompt_messages("Q", instruction=None) == [{"role": "user", "content": "Q"}]
    with pytest.raises(ValueError, match="few-shot k=11 is larger than the 10"):
        g.few_shot(rows, 11, seed=0)


def test_prompts_go_through_the_ml_layers_chat_template():
    from fairtrial.ml.causal_lm.generate import render

    class Tok:  # the one call render makes, as transformers' tokenizers answer it
        chat_template = "{% for m in messages %}<{{m.role}}>{{m.content}}{% endfor %}<assistant>"

        def apply_chat_template(self, msgs, tokenize, add_generation_prompt):
            return "".join(f"<{m['role']}>{m['content']}" for m in msgs) + "<assistant>"

    text, chat = render(Tok(), g.prompt_messages("Q?", [("q", "a")]))
    assert chat and text.endswith("<user>q<assistant>a<user>Q?<assistant>")


# ---------------------------------------------------------------------------------------------
# lm-evaluation-harness's GSM8K filters

AGREE = [
    # (model text, reference): lm-eval's flexible filter and ours give the same verdict
    ("She sells 9 eggs a day, 9 * 2 = 18.\n#### 18", "18"),
    ("The answer is 18.", "18"),
    ("The answer is 7.", "7"),
    ("Total: $1,200", "1,200"),
    ("So she has -3 apples. #### -3", "-3"),
    ("He owes -$5.", "-5"),
    ("He owes $-5", "-5"),
    ("The discount is 25%.", "25"),
    ("It costs \u00a318", "18"),
    ("The answer is 3.5 hours.", "3.5"),
    ("The answer is 17", "18"),
    ("I don't know.", "18"),
    ("16 - 3 - 4 = 9 eggs, so she makes 9 * 2 = 18 dollars. Or 20.", "18"),
]

IMPROVEMENTS = [
    # (what ours does better, model text, reference); ours is right, lm-eval's flexible is wrong
    ("a trailing .0 / trailing zeros", "The answer is 18.0", "18"),
    ("a trailing .0 / trailing zeros", "It costs $4.50", "4.5"),
    ("a trailing .0 / trailing zeros", "The house costs $1,200,000.00", "1,200,000"),
    ("a sign: the Unicode minus", "It is \u22127 degrees", "-7"),
    ("a sign: a hyphen in a range is no minus", "He reads pages 12-15", "15"),
    ("a trailing period: an ellipsis", "The answer is 18...", "18"),
    ("a thousands separator comes in groups of three: a list is not one number",
     "The sequence ends 12,15,18", "18"),
    ("a trailing period: a stray '..' after the answer is no number", "So she pays 1,200. ..",
     "1200"),
    ("a leading zero", "She leaves at 0900-0130 = 0730 hours", "730"),
    ("digits inside a word are no number", "so 3000 - 50 = 2950 songs on her mp3 player.",
     "2950"),
]

STRICT_IMPROVEMENTS = [
    # the `#### ` marker: lm-eval's strict filter misses or misreads these, ours reads them
    ("a currency sign after the marker", "#### $18", "18"),
    ("no space after the marker", "####18", "18"),
    ("markdown around the number", "#### **18**", "18"),
    ("a trailing .0", "#### 18.0", "18"),
    ("words between the marker and the number", "#### The answer is 42", "42"),
    ("a sign: the Unicode minus", "#### \u22125", "-5"),
]


@pytest.fixture(scope="module")
def lm_eval():
    """lm-eval's GSM8K filters and metric, configured from its own task file."""
    if importlib.util.find_spec("lm_eval") is None:
        pytest.skip("lm-eval is not installed (pip install lm-eval; only this comparison needs it)")
    import yaml
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    task = Path(importlib.util.find_spec("lm_eval").submodule_search_locations[0]) / \
        "tasks/gsm8k/gsm8k.yaml"
    cfg = yaml.safe_load(task.read_text())
    metric = cfg["metric_list"][0]
    filters = {f["name"]: f["filter"][0] for f in cfg["filter_list"]}

    def extracted(kind: str, text: str) -> str:
        f = filters[kind]
        return RegexFilter(f["regex_pattern"], f.get("group_select", 0)).apply([[text]], [{}])[0][0]

    def correct(kind: str, text: str, reference: str) -> bool:
        got = extracted(kind, text)
        em = exact_match_hf_evaluate([got], [f"solution\n#### {reference}"],
                                     regexes_to_ignore=metric["regexes_to_ignore"],
                                     ignore_case=metric["ignore_case"],
                                     ignore_punctuation=metric["ignore_punctuation"])
        return bool(em["exact_match"])

    correct.extracted = extracted
    return correct


def test_lm_eval_flexible_filter_agrees_except_for_documented_improvements(lm_eval):
    for text, ref in AGREE:
        assert bool(g.score(text, ref)) == lm_eval("flexible-extract", text, ref), text
    for what, text, ref in IMPROVEMENTS:
        assert g.score(text, ref) == 1.0, what
        assert not lm_eval("flexible-extract", text, ref), f"no longer a difference: {what}"


def test_lm_eval_strict_filter_agrees_except_for_documented_improvements(lm_eval):
    for text, ref in AGREE:
        if "#### " in text:
            assert bool(g.score(text, ref)) == lm_eval("strict-match", text, ref), text
    for what, text, ref in STRICT_IMPROVEMENTS:
        assert g.extract(text).how == "marker" and g.score(text, ref) == 1.0, what
        assert not lm_eval("strict-match", text, ref), f"no longer a difference: {what}"


def test_lm_eval_on_the_reference_solutions(lm_eval):
    """Both read every test-set solution right (lm-eval's strict filter is made for them)."""
    for row in _rows("test"):
        ref = row["answer"].rsplit("####", 1)[1].strip()
        assert lm_eval("strict-match", row["answer"], ref) and g.score(row["answer"], ref) == 1.0


def _category(lm_got: str, text: str) -> str | None:
    """Which documented improvement explains a disagreement, judged from lm-eval's extraction."""
    if re.fullmatch(r"-?\$?[\d,]*\.\d*0\.?", lm_got):
        return "a trailing .0 / trailing zeros"
    if re.fullmatch(r"0\d+\.?", lm_got):
        return "a leading zero"
    if re.search(rf"[A-Za-z]{re.escape(lm_got.rstrip('.'))}\b", text):
        return "digits inside a word are no number"
    return None


def test_lm_eval_on_model_style_solutions_only_documented_improvements(lm_eval):
    """The 7,473 train solutions with their `####` line removed (calculator markup removed, as a
    model writes them), read by lm-eval's flexible filter and by ours: every disagreement is one
    of the documented improvements, with ours right; lm-eval is never right where ours is wrong."""
    documented = {what for what, _, _ in IMPROVEMENTS}
    seen: dict[str, int] = {}
    for row in _rows("train"):
        body, tail = row["answer"].rsplit("####", 1)
        text, ref = g.clean_solution(body).strip(), tail.strip()
        ours, theirs = g.score(text, ref) == 1.0, lm_eval("flexible-extract", text, ref)
        if ours == theirs:
            continue
        assert ours, f"lm-eval reads this right and we do not: {text[-120:]!r}"
        what = _category(lm_eval.extracted("flexible-extract", text), text)
        assert what in documented, (what, text[-120:])
        seen[what] = seen.get(what, 0) + 1
    print(f"GSM8K train, model-style: ours right and lm-eval wrong on {sum(seen.values())}: {seen}")
    assert sum(seen.values()) == 174 and set(seen) == {
        "a trailing .0 / trailing zeros", "a leading zero", "digits inside a word are no number"}
