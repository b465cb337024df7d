"""Pairwise judging, fair by construction: both orders, flips counted apart, errors counted, the
judge never a contestant.

    judge = ReferenceJudge(load_encoder("all-MiniLM-L6-v2"), margin=0.02)     # offline, CPU
    judge = LLMJudge(complete, template=PAIRWISE_PROMPT)                       # a model or endpoint
    pairs = judge_pairs(judge, prompts, candidate_answers, reference_answers, references=gold)
    summary = summarize(pairs)          # win/tie/loss, inconsistent, errors, rates, intervals
    findings = judge_findings("llama-70b", ["student-curated", "llama-70b"])  # a contestant

**Both orders.** Every prompt is judged twice: candidate as A and reference system as B, then
swapped. Each game's verdict is read from the candidate's side (win, tie, loss) and the pair's
outcome is:

| first order | second order | outcome |
| --- | --- | --- |
| same verdict | same verdict | that verdict (position-consistent) |
| win | tie (or tie, win) | win |
| loss | tie (or tie, loss) | loss |
| win | loss (or loss, win) | **inconsistent**: the verdict flips with the order |
| error in either order after the retries | | **error** |

Position consistency is the share of judged pairs (errors excluded) whose two verdicts are equal,
with a Wilson interval over pairs.

**Scores per prompt** (`PairResult.score`, the item score written for the paired bootstrap over
prompts across arms): win 1, tie 0.5, loss 0; an inconsistent or errored pair has no score (NaN)
in the main analysis and is counted apart. In the sensitivity (`score_inconsistent_as_tie`) an
inconsistent pair is a tie (0.5). Errors are never dropped silently: they are counted, and the
summary says how many prompts have no verdict.

**Judge errors** (a verdict that cannot be read, an endpoint that failed) are retried
`retries` times (only the failed games are asked again), then counted.

**The judges.** `LLMJudge` asks a language model with a documented pairwise prompt
(`PAIRWISE_PROMPT`; a study may give its own, checked for the placeholders `{question}`,
`{answer_a}`, `{answer_b}`, and optionally `{reference}`) through any `complete` function (a local
model through `fairtrial.ml.causal_lm.generate`, an endpoint through `fairtrial.ml.endpoint`).
`ReferenceJudge` is deterministic, for offline CPU studies: the answer whose sentence embedding
(`fairtrial.ml.embed`) is closer to the reference answer by cosine similarity wins, a tie when the
two similarities differ by at most `margin`. It is symmetric, so it is position-consistent by
construction; the consistency check matters for LLM judges.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Verdict = Literal["A", "B", "tie"]
Side = Literal["win", "tie", "loss"]
Outcome = Literal["win", "tie", "loss", "inconsistent", "error"]

REQUIRED_PLACEHOLDERS = ("question", "answer_a", "answer_b")
OPTIONAL_PLACEHOLDERS = ("reference",)

PAIRWISE_PROMPT = """\
You are a strict, impartial judge. Compare two assistant answers to the user's question below.
Judge correctness first, then helpfulness and clarity. Ignore the order in which the answers are
shown and their length. Do not favour either assistant by name or style.

[Question]
{question}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Reply with one line: "Verdict: A" if answer A is better, "Verdict: B" if answer B is better, or
"Verdict: tie" if they are equally good."""
"""The documented pairwise prompt (docs/recipes/curate-distill.md); after MT-Bench's pairwise
judge prompt, with a one-line verdict that `parse_verdict` reads."""


class JudgeError(ValueError):
    """A bad judge configuration (a prompt without its placeholders, a judge that competes)."""


def check_prompt(template: str) -> tuple[str, ...]:
    """The placeholders of a judge prompt; a JudgeError when a required one is missing or an
    unknown one is present (a typo would otherwise reach the judge as literal text)."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise JudgeError(f"judge prompt: not a format string ({e}); write literal braces as "
                         f"{{{{ and }}}}") from e
    missing = [p for p in REQUIRED_PLACEHOLDERS if p not in names]
    unknown = sorted(names - set(REQUIRED_PLACEHOLDERS) - set(OPTIONAL_PLACEHOLDERS))
    if missing or unknown:
        raise JudgeError("judge prompt: " + "; ".join(
            ([f"missing placeholder(s) {', '.join('{' + m + '}' for m in missing)}"]
             if missing else []) +
            ([f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}"]
             if unknown else [])) +
            f" (it needs {', '.join('{' + p + '}' for p in REQUIRED_PLACEHOLDERS)}, "
            f"and may use {{reference}})")
    return tuple(sorted(names))


_VERDICT = re.compile(r"verdict\s*[:=]?\s*\**\s*\[?\[?\s*(A|B|tie)\b", re.IGNORECASE)


def parse_verdict(text: str) -> Verdict | None:
    """The last "Verdict: A|B|tie" of a judge's answer (MT-Bench's [[A]] style accepted), else
    the answer when it is only "A", "B" or "tie"; None when unreadable."""
    found = _VERDICT.findall(text)
    word = found[-1] if found else text.strip().strip(".[]*\"'").strip()
    word = word.lower()
    return {"a": "A", "b": "B", "tie": "tie"}.get(word)  # type: ignore[return-value]


@dataclass(frozen=True)
class Game:
    question: str
    answer_a: str
    answer_b: str
    reference: str | None = None


class Judge(Protocol):
    name: str

    def verdicts(self, games: Sequence[Game]) -> list[Verdict | None]:
        """A verdict per game, None for an error (counted and retried by the caller)."""


class LLMJudge:
    """A language model asked with `template`; `complete` maps prompts (chat messages) to texts
    (an exception from it makes every game of that call an error)."""

    def __init__(self, complete: Callable[[list[list[dict[str, str]]]], list[str | None]], *,
                 name: str, template: str = PAIRWISE_PROMPT):
        self.placeholders = check_prompt(template)
        self.complete, self.name, self.template = complete, name, template
        self.errors: list[str] = []
        self.failed_calls = 0
        """Games whose request failed (an exception, or None from `complete`), as opposed to an
        answer without a readable verdict: when every game fails so, the judge is down."""

    def messages(self, game: Game) -> list[dict[str, str]]:
        if "reference" in self.placeholders and game.reference is None:
            raise JudgeError("judge prompt uses {reference} but no reference answers were given")
        return [{"role": "user", "content": self.template.format(
            question=game.question, answer_a=game.answer_a, answer_b=game.answer_b,
            reference=game.reference or "")}]

    def verdicts(self, games: Sequence[Game]) -> list[Verdict | None]:
        try:
            texts = self.complete([self.messages(g) for g in games])
        except JudgeError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the judge is counted, not fatal
            self.errors.append(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
            self.failed_calls += len(games)
            return [None] * len(games)
        out = [parse_verdict(t) if t is not None else None for t in texts]
        self.failed_calls += sum(t is None for t in texts)
        self.errors += [f"unreadable verdict: {t[:80]!r}" for t, v in zip(texts, out)
                        if v is None and t is not None]
        return out


def local_complete(model, tokenizer, *, max_new_tokens: int = 64, batch_size: int = 8
                   ) -> Callable[[list[list[dict[str, str]]]], list[str]]:
    """`LLMJudge`'s `complete` for a local model: greedy, through the ML layer's `generate` (the
    model's chat template applied there)."""
    def complete(batch: list[list[dict[str, str]]]) -> list[str]:
        from fairtrial.ml.causal_lm.generate import (
            generate,  # torch: imported when used
        )

        return generate(model, tokenizer, batch, max_new_tokens=max_new_tokens,
                        temperature=0.0, batch_size=batch_size)
    return complete


def endpoint_complete(client, *, max_concurrency: int = 4, errors: list[str] | None = None,
                      **generation) -> Callable[[list[list[dict[str, str]]]], list[str | None]]:
    """`LLMJudge`'s `complete` for an endpoint (`fairtrial.ml.endpoint.ChatClient`): the games of a
    call asked `max_concurrency` at a time, each with the client's retries. A game whose request
    still fails is None (an error the judge retries, then counts) and its reason is appended to
    `errors`; the other games of the call keep their answers."""
    def one(m: list[dict[str, str]]) -> str | None:
        try:
            return client.complete(m, **generation)["text"]
        except Exception as e:  # noqa: BLE001 - one failed game must not lose the others
            if errors is not None:
                errors.append(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")
            return None

    def complete(batch: list[list[dict[str, str]]]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
            return list(pool.map(one, batch))
    return complete


class ReferenceJudge:
    """Closer to the reference answer by sentence-embedding cosine wins; within `margin`, a tie."""

    def __init__(self, encoder, *, margin: float = 0.02, name: str | None = None):
        if not 0 <= margin < 2:
            raise JudgeError(f"reference judge: margin must be in [0, 2), got {margin}")
        self.encoder, self.margin = encoder, margin
        self.name = name or f"reference-judge:{getattr(encoder, 'key', 'encoder')}"

    def verdicts(self, games: Sequence[Game]) -> list[Verdict | None]:
        if any(g.reference is None for g in games):
            raise JudgeError("the reference judge needs a reference answer for every prompt")
        texts = sorted({t for g in games for t in (g.answer_a, g.answer_b, g.reference)})
        index = {t: i for i, t in enumerate(texts)}
        vec = self.encoder.encode(texts, normalize=True)
        out: list[Verdict | None] = []
        for g in games:
            r = vec[index[g.reference]]
            sa = float(vec[index[g.answer_a]] @ r)
            sb = float(vec[index[g.answer_b]] @ r)
            out.append("tie" if abs(sa - sb) <= self.margin else ("A" if sa > sb else "B"))
        return out


# ---------------------------------------------------------------------------------------------
# pairs


@dataclass(frozen=True)
class PairResult:
    prompt_id: str
    first: Side | None
    """The candidate's result with the candidate shown first (as A); None: an error."""
    second: Side | None
    """With the candidate shown second (as B)."""
    outcome: Outcome

    @property
    def score(self) -> float:
        """Win 1, tie 0.5, loss 0; NaN for inconsistent and error (counted apart)."""
        return {"win": 1.0, "tie": 0.5, "loss": 0.0}.get(self.outcome, math.nan)

    @property
    def score_inconsistent_as_tie(self) -> float:
        return 0.5 if self.outcome == "inconsistent" else self.score


_SIDE_FIRST: dict[str, Side] = {"A": "win", "B": "loss", "tie": "tie"}
_SIDE_SECOND: dict[str, Side] = {"A": "loss", "B": "win", "tie": "tie"}


def combine(first: Side | None, second: Side | None) -> Outcome:
    """The pair's outcome from its two games (the table of the module docstring)."""
    if first is None or second is None:
        return "error"
    if first == second:
        return first
    if {first, second} == {"win", "loss"}:
        return "inconsistent"
    return "win" if "win" in (first, second) else "loss"


def judge_pairs(judge: Judge, prompt_ids: Sequence[str], questions: Sequence[str],
                candidate: Sequence[str], reference_system: Sequence[str], *,
                references: Sequence[str] | None = None, retries: int = 2) -> list[PairResult]:
    """Judge the candidate against the reference system on every prompt, in both orders,
    retrying failed games `retries` times."""
    n = len(prompt_ids)
    if not n == len(questions) == len(candidate) == len(reference_system):
        raise JudgeError(f"judge: {n} prompt ids, {len(questions)} questions, {len(candidate)} "
                         f"candidate and {len(reference_system)} reference-system answers; "
                         f"they must be paired one to one")
    if references is not None and len(references) != n:
        raise JudgeError(f"judge: {len(references)} reference answers for {n} prompts")
    if retries < 0:
        raise JudgeError(f"judge.retries must be >= 0, got {retries}")
    ref = list(references) if references is not None else [None] * n
    games = [Game(questions[i], candidate[i], reference_system[i], ref[i]) for i in range(n)] + \
            [Game(questions[i], reference_system[i], candidate[i], ref[i]) for i in range(n)]
    verdicts: list[Verdict | None] = [None] * len(games)
    todo = list(range(len(games)))
    for _ in range(retries + 1):
        if not todo:
            break
        got = judge.verdicts([games[j] for j in todo])
        if len(got) != len(todo):
            raise JudgeError(f"judge {judge.name} gave {len(got)} verdicts for {len(todo)} games")
        for j, v in zip(todo, got):
            verdicts[j] = v
        todo = [j for j in todo if verdicts[j] is None]
    out = []
    for i in range(n):
        a, b = verdicts[i], verdicts[n + i]
        first = _SIDE_FIRST[a] if a is not None else None
        second = _SIDE_SECOND[b] if b is not None else None
        out.append(PairResult(str(prompt_ids[i]), first, second, combine(first, second)))
    return out


@dataclass(frozen=True)
class Summary:
    n: int
    counts: Mapping[str, int]
    """wins, ties, losses, inconsistent, errors."""
    win_rate: float
    """(wins + ties / 2) / (wins + ties + losses): inconsistent and errors counted apart."""
    win_rate_interval: tuple[float, float]
    """Percentile bootstrap over prompts (not games)."""
    win_rate_inconsistent_as_tie: float
    """The sensitivity: inconsistent pairs as ties."""
    position_consistency: float
    """The share of judged pairs (no error) whose two verdicts are equal."""
    position_consistency_interval: tuple[float, float]
    """Wilson, over pairs."""
    judged: int
    """Pairs with a verdict in both orders."""
    extra: dict = field(default_factory=dict)


def summarize(pairs: Sequence[PairResult], *, seed: int = 0, level: float = 0.95) -> Summary:
    """Counts, rates and intervals of a judged comparison (module docstring)."""
    from fairtrial.base.intervals import one_level_mean, wilson  # recipes may not import stats

    counts = {k: sum(p.outcome == k for p in pairs)
              for k in ("win", "tie", "loss", "inconsistent", "error")}
    scores = np.array([p.score for p in pairs], dtype=float)
    scored = scores[~np.isnan(scores)]
    sens = np.array([p.score_inconsistent_as_tie for p in pairs], dtype=float)
    sens = sens[~np.isnan(sens)]
    judged = [p for p in pairs if p.outcome != "error"]
    same = sum(p.first == p.second for p in judged)
    nan = float("nan")
    interval = (one_level_mean(scored, seed=seed, level=level) if len(scored) > 1
                else (nan, nan))
    return Summary(
        n=len(pairs), counts=counts,
        win_rate=float(scored.mean()) if len(scored) else nan,
        win_rate_interval=tuple(float(x) for x in interval),
        win_rate_inconsistent_as_tie=float(sens.mean()) if len(sens) else nan,
        position_consistency=same / len(judged) if judged else nan,
        position_consistency_interval=wilson(same, len(judged), level),
        judged=len(judged))


def judge_findings(judge: str, contestants: Sequence[str]) -> list[str]:
    """Integrity findings: the judge is one of the contestants (the opponent judging itself, or
    the teacher judging its student against itself). Names compare case- and space-blind."""
    key = " ".join(judge.lower().split())
    return [f"the judge {judge!r} is also a contestant ({c!r}): a model judging its own answers "
            f"favours them; use another judge" for c in contestants
            if " ".join(c.lower().split()) == key]
