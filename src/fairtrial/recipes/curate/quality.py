"""quality: deterministic scores per sample, the rules that remove, and one quality score.

Scores (all pure functions of the texts, documented in docs/recipes/curate.md):
  prompt_tokens, response_tokens  tokens = words and single punctuation marks (regex `\\w+|[^\\w\\s]`),
                                  the unit of every length and token budget of this recipe
  repetition    share of the response's word 3-grams that repeat an earlier 3-gram of it
  non_letter    share of the non-space characters of prompt + response that are not letters
  copy          share of the response's word 3-grams that occur in the prompt
  refusal       the response matches a refusal phrase (REFUSALS)
  boilerplate   the response matches a chat boilerplate phrase (BOILERPLATE)
  truncated     the response ends mid-sentence or leaves a bracket or code fence open
  quality       (1 - repetition) x (1 - copy) x 0.5 if truncated x 0.5 if boilerplate x 0 if a
                refusal: in [0, 1], higher is better; ranks the curated arm and picks a duplicate
                cluster's representative
  ifd           optional (quality.ifd): instruction-following difficulty under a small LM (ifd.py)
Rules (removal, first failing rule in RULES order is the one counted): thresholds from the study.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
WORD = re.compile(r"\w+", re.UNICODE)

REFUSALS = re.compile(
    r"\b(as an ai( language model)?|i('| a)m (sorry|afraid),? (but )?i (can(no|')t|am unable|"
    r"won't)|i can(no|')t (help|assist|provide|comply) with|i('m| am) (not able|unable) to "
    r"(help|assist|provide|comply))", re.IGNORECASE)
BOILERPLATE = re.compile(
    r"\b(i hope (this|that) helps|feel free to (ask|reach out)|let me know if you (have|need)|"
    r"happy to help|great question)", re.IGNORECASE)
_END_OK = set(".!?\"')]}>`*|:;%$") | set("0123456789")
_PAIRS = {"(": ")", "[": "]", "{": "}"}

RULES = ("prompt_too_short", "prompt_too_long", "response_too_short", "response_too_long",
         "refusal", "repetition", "non_letter", "copy", "truncated", "boilerplate", "ifd")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def n_tokens(text: str) -> int:
    return sum(1 for _ in TOKEN.finditer(text))


def _ngrams(words: Sequence[str], n: int = 3) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def repetition(text: str) -> float:
    grams = _ngrams([w.lower() for w in WORD.findall(text)])
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def non_letter(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return 0.0 if not chars else sum(1 for c in chars if not c.isalpha()) / len(chars)


def copy_share(prompt: str, response: str) -> float:
    r = _ngrams([w.lower() for w in WORD.findall(response)])
    if not r:
        return 0.0
    p = set(_ngrams([w.lower() for w in WORD.findall(prompt)]))
    return sum(1 for g in r if g in p) / len(r)


def truncated(response: str) -> bool:
    """A ``` fence left open; or no final punctuation, digit or closing bracket at the end and
    either a bracket left open, a last character that is no letter (a comma, a dash), or a bare
    last word ending a prose line of 8+ words."""
    t = response.rstrip()
    if not t:
        return True
    if t.count("```") % 2:
        return True
    depth = {k: 0 for k in _PAIRS}
    for c in t:
        if c in _PAIRS:
            depth[c] += 1
        elif c in _PAIRS.values():
            k = next(o for o, cl in _PAIRS.items() if cl == c)
            depth[k] -= 1
    last = t[-1]
    if last in _END_OK:  # an open bracket counts only here: GSM8K's "1)" lists end in a digit
        return False
    if any(v > 0 for v in depth.values()):
        return True
    if last.isalpha():  # a bare last word: cut off when the last line is prose (8+ words)
        return len(t.splitlines()[-1].split()) >= 8
    return True  # a comma, a dash, an opening quote...


def score(prompt: str, response: str) -> dict:
    rep = repetition(response)
    cp = copy_share(prompt, response)
    trunc = truncated(response)
    refusal = bool(REFUSALS.search(response))
    boiler = bool(BOILERPLATE.search(response))
    q = (1 - rep) * (1 - cp) * (0.5 if trunc else 1.0) * (0.5 if boiler else 1.0) * (0.0 if refusal else 1.0)
    return {"prompt_tokens": n_tokens(prompt), "response_tokens": n_tokens(response),
            "repetition": rep, "non_letter": non_letter(prompt + response), "copy": cp,
            "refusal": refusal, "boilerplate": boiler, "truncated": trunc, "quality": q}


def failed_rules(s: dict, q) -> list[str]:
    """Every rule a sample's scores `s` fail under QualityParams `q`, in RULES order."""
    out = []
    if s["prompt_tokens"] < q.min_prompt_tokens:
        out.append("prompt_too_short")
    if s["prompt_tokens"] > q.max_prompt_tokens:
        out.append("prompt_too_long")
    if s["response_tokens"] < q.min_response_tokens:
        out.append("response_too_short")
    if s["response_tokens"] > q.max_response_tokens:
        out.append("response_too_long")
    if q.drop_refusals and s["refusal"]:
        out.append("refusal")
    if q.max_repetition is not None and s["repetition"] > q.max_repetition:
        out.append("repetition")
    if q.max_non_letter is not None and s["non_letter"] > q.max_non_letter:
        out.append("non_letter")
    if q.max_copy is not None and s["copy"] > q.max_copy:
        out.append("copy")
    if q.drop_truncated and s["truncated"]:
        out.append("truncated")
    if q.drop_boilerplate and s["boilerplate"]:
        out.append("boilerplate")
    if q.ifd and q.max_ifd is not None and s.get("ifd", float("nan")) > q.max_ifd:
        out.append("ifd")   # NaN (no response tokens) compares False: not removed
    return out
