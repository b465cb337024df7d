"""GSM8K: the documented answer extraction, the comparison with the reference, and the prompts.

    extract("She makes $1,200.") -> Extracted(value="1200", how="last")
    extract("... #### -5") -> Extracted(value="-5", how="marker")
    score(model_text, reference_text) -> 1.0 / 0.0 (an unparsed answer is wrong; `how == "none"`)
    messages = prompt_messages(question, shots=few_shot(train_rows, 5, seed=0))
    # rendered through the model's chat template by `fairtrial.ml.causal_lm.generate` (its `render`)

The extraction rule (docs/recipes/curate-distill.md):
1. **The marker.** The first `####` that is followed, on the same line, by a number: that number
   (markdown or a currency sign between the marker and the number is skipped: `#### **$18**`).
2. **Else the last number** of the text.
3. **Else unparsed**: `value is None`, scored wrong and counted by the caller.

A number is an optional sign (`-` or the Unicode minus, not preceded by a letter or digit, so that
`2019-2020` is two positive numbers and `5-3` is not "-3"), an optional currency sign
(`$ € £ ¥ ₹`, before or after the sign), digits with optional thousands separators in groups of
three (`1,600`; a list `3,4,5` is three numbers), an optional decimal part (`.5` alone is 0.5),
and an optional `%`. Digits inside a word (`mp3`, `D3`) are not a number.
Canonical form: thousands separators, currency and percent signs dropped, a trailing `.0` (or
`.50` -> `.5`) and leading zeros (`0730` -> `730`) removed, a trailing sentence period never part
of the number, `-0` is `0`; the value is kept as a decimal string, so `18`, `18.0`, `$18.00` and
`18.` are all `"18"`.

lm-evaluation-harness's GSM8K task does less (`tests/recipes/curate/test_part2_gsm8k.py` checks
every difference): its strict filter is the regex `#### (\\-?[0-9\\.\\,]+)` and its flexible filter
the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`, and its exact match only drops `,`, `$` and one
trailing `.` before comparing strings. So trailing zeros (`$990.00`), a leading zero (`0730`),
digits inside a word (`mp3`), a range's hyphen (`12-15`), the Unicode minus, a trailing ellipsis
and text after the marker (`#### $18`, `####18`) score differently there. On the 7,473 GSM8K train
solutions with their marker line removed (model-style answers), ours is right and lm-eval's
flexible filter wrong on 174, and never the other way round (tested).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

MARKER = "####"
CURRENCY = "$€£¥₹"
MINUS = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign

_NUMBER = re.compile(
    rf"(?<![\w.])(?P<sign>[{MINUS}])?(?:(?P<cur>[{CURRENCY}])\s?)?(?P<sign2>[{MINUS}])?"
    r"(?P<num>(?>\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?!\d)(?P<pct>\s?%)?")
"""One number (see the module docstring). The look-behind keeps a hyphen inside a word or a
range out of the sign, and the fractional part of `3.5` from being a number of its own; the atomic
group keeps `1,600` whole (never `1` then `600`) and `1,6000` from reading as `1,600`."""

_AFTER_MARKER = re.compile(rf"{re.escape(MARKER)}[ \t*:_]*(?P<rest>[^\n]*)")

DEFAULT_INSTRUCTION = ("Solve the math problem step by step. End your answer with a line "
                       "'#### N' where N is the final number.")
"""The zero-shot and few-shot instruction (the system turn); a study file may replace it."""


@dataclass(frozen=True)
class Extracted:
    value: str | None
    """The canonical number, or None when no number was found."""
    how: Literal["marker", "last", "none"]


def canonical(text: str) -> str | None:
    """The canonical form of one number written as text (`"$1,200.50"` -> `"1200.5"`), or None
    when `text` is not exactly one number."""
    m = _NUMBER.fullmatch(text.strip().rstrip("."))
    return _canon(m) if m else None


def _canon(m: re.Match) -> str | None:
    if m.group("sign") and m.group("sign2"):
        return None  # "--5", "-$-5": not a number
    try:
        d = Decimal(m.group("num").replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex admits only digits, commas, a dot
        return None
    if m.group("sign") or m.group("sign2"):
        d = -d
    if d == 0:
        d = Decimal(0)
    # normalize() drops trailing zeros (18.50 -> 18.5, 18.0 -> 18); "f" keeps 1E+2 as "100"
    return format(d.normalize(), "f")


def numbers(text: str) -> list[str]:
    """Every number of `text`, canonical, in order."""
    return [c for c in (_canon(m) for m in _NUMBER.finditer(text)) if c is not None]


def extract(text: str) -> Extracted:
    """The model's final answer by the documented rule (module docstring)."""
    for marker in _AFTER_MARKER.finditer(text):
        found = numbers(marker.group("rest"))
        if found:
            return Extracted(found[0], "marker")
    found = numbers(text)
    if found:
        return Extracted(found[-1], "last")
    return Extracted(None, "none")


def reference_answer(answer: str, *, where: str = "GSM8K answer") -> str:
    """The canonical final answer of a GSM8K reference solution (the number after `####`);
    a ValueError naming `where` when it has none."""
    marked = [m for m in _AFTER_MARKER.finditer(answer)]
    found = numbers(marked[-1].group("rest")) if marked else []
    if not found:
        raise ValueError(f"{where}: no '#### <number>' final answer in the reference solution")
    return found[0]


def score(model_text: str, reference: str) -> float:
    """1.0 when the extracted answer equals the reference's (both canonical), else 0.0 (an
    unparsed answer included). `reference` is a full solution with `####` or a bare number."""
    ref = canonical(reference)
    if ref is None:
        ref = reference_answer(reference)
    got = extract(model_text).value
    return float(got is not None and Decimal(got) == Decimal(ref))


# ---------------------------------------------------------------------------------------------
# prompts

_CALCULATOR = re.compile(r"<<[^<>]*>>")


def clean_solution(answer: str) -> str:
    """A reference solution as a few-shot answer: the calculator annotations `<<2*3=6>>` removed
    (they are GSM8K's tool markup, not text a model should imitate)."""
    return _CALCULATOR.sub("", answer)


def few_shot(rows: Sequence[Mapping[str, str]], k: int, *, seed: int,
             exclude: str | None = None) -> list[tuple[str, str]]:
    """`k` (question, cleaned solution) pairs drawn from `rows` (GSM8K train rows) by `seed`,
    never the question `exclude` (the item being asked)."""
    if k < 0:
        raise ValueError(f"few-shot k must be >= 0, got {k}")
    pool = [r for r in rows if r["question"] != exclude]
    if k > len(pool):
        raise ValueError(f"few-shot k={k} is larger than the {len(pool)} examples to draw from")
    picked = random.Random(seed).sample(range(len(pool)), k)
    return [(pool[i]["question"], clean_solution(pool[i]["answer"])) for i in picked]


def prompt_messages(question: str, shots: Sequence[tuple[str, str]] = (), *,
                    instruction: str | None = DEFAULT_INSTRUCTION) -> list[dict[str, str]]:
    """Chat messages for one item: the instruction as the system turn (None: no system turn),
    each shot as a user/assistant pair, then the question. Zero-shot is `shots=()`. The chat
    template is applied by the ML layer (`generate.render`), so every model gets its own."""
    msgs: list[dict[str, str]] = []
    if instruction:
        msgs.append({"role": "system", "content": instruction})
    for q, a in shots:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": question})
    return msgs
