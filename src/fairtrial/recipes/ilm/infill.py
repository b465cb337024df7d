"""Fill in the blanks with a trained ILM: `infill(model_dir, "She _ to school every _ .")`.

Blanks in the text:
  _                      a word blank (an underscore standing alone, not inside snake_case)
  [word] [ngram] [sentence] [paragraph] [document]
                         a typed blank
  <|blank_word|> ...     the blank tokens themselves
The text is tokenized with the blanks as the ILM blank tokens, `<|start_infill|>` is appended, and
the model samples until it has closed one answer per blank with `<|end_infill|>` (blank tokens,
`<|start_infill|>` and `<|endoftext|>` are banned meanwhile); if `max_new_tokens` run out first, a
blank it did not answer is filled with nothing.
The answers are put in place at the token level, replacing each blank token with its answer's
tokens, and the whole sequence is decoded: the spacing is then whatever the model learnt from the
training examples, not a guess made here.
"""

from __future__ import annotations

import re
from pathlib import Path

from fairtrial.recipes.ilm.tokenizer import BLANK_TOKENS

# One space before a blank is part of the blank: the data side gives a word's leading space to the
# answer ("She<|blank_word|> to school" + " walks"), so "She _ to school" must be read that way too.
_BLANK = re.compile(
    r" ?(?P<literal><\|blank_(?P<lkind>word|ngram|sentence|paragraph|document)\|>)"
    r"| ?\[(?P<bkind>word|ngram|sentence|paragraph|document)\]"
    r"| ?(?<![\w])(?P<under>_)(?![\w])")


def to_context(text_with_blanks: str, default: str = "word") -> tuple[str, list[str]]:
    """(the text with every blank written as its ILM blank token, the blank kinds in order)."""
    kinds: list[str] = []

    def sub(m: re.Match) -> str:
        kind = m.group("lkind") or m.group("bkind") or default
        kinds.append(kind)
        return BLANK_TOKENS[kind]

    return _BLANK.sub(sub, text_with_blanks), kinds


def resolve_model_dir(model_dir: str | Path) -> Path:
    """A train-stage artifact holds its model in model/; accept that folder or the model folder."""
    p = Path(model_dir)
    if (p / "model" / "config.json").exists():
        return p / "model"
    return p


def infill(model_dir: str | Path, text_with_blanks: str, *, temperature: float = 0.8,
           top_k: int | None = 0, top_p: float | None = 0.95, max_new_tokens: int = 64,
           seed: int = 0, n: int = 1, device: str = "cpu") -> list[str]:
    """`n` versions of the text with every blank filled by the model. temperature 0 is greedy."""
    return [filled for filled, _ in infill_with_answers(
        model_dir, text_with_blanks, temperature=temperature, top_k=top_k, top_p=top_p,
        max_new_tokens=max_new_tokens, seed=seed, n=n, device=device)]


def infill_with_answers(model_dir: str | Path, text_with_blanks: str, *,
                        temperature: float = 0.8, top_k: int | None = 0,
                        top_p: float | None = 0.95, max_new_tokens: int = 64, seed: int = 0,
                        n: int = 1, device: str = "cpu") -> list[tuple[str, list[str]]]:
    """Like `infill`, also returning each sample's answers (decoded, one per blank)."""
    from fairtrial.ml.causal_lm.model import max_positions
    from fairtrial.recipes.ilm.model import load_model
    from fairtrial.recipes.ilm.tokenizer import special_ids

    if n < 1:
        raise ValueError(f"n must be at least 1 (got {n})")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (got {temperature})")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1 (got {max_new_tokens})")
    context, kinds = to_context(text_with_blanks)
    if not kinds:
        raise ValueError(f"no blanks in {text_with_blanks!r}: mark them with _ (a word), "
                         f"[ngram], [sentence], [paragraph] or [document]")

    model, tok = load_model(resolve_model_dir(model_dir), device=device)
    ids = special_ids(tok)
    prompt = tok(context, add_special_tokens=False)["input_ids"] + [ids["start_infill"]]
    room = max_positions(model) - len(prompt)
    if room < 1:
        raise ValueError(f"the text is {len(prompt)} tokens with its blanks; the model reads at "
                         f"most {max_positions(model)}: shorten it")
    max_new = min(max_new_tokens, room)

    # the ML layer's decoder (the one generation path of every recipe), with ILM's rules: a row
    # is done once it has closed every blank; an answer is plain text, so blanks and
    # <|start_infill|> inside one would make no sense; and <|endoftext|> before the last blank is
    # answered would leave blanks empty, so it is never generated (a model trained mostly on
    # one-blank examples tends to stop after the first answer). n rows of the same prompt sample
    # independently, in one batch whose shared prompt runs once.
    from fairtrial.ml.causal_lm.generate import generate_ids

    end_id, n_blanks = ids["end_infill"], len(kinds)
    banned = [ids[k] for k in BLANK_TOKENS] + [ids["start_infill"], ids["eos"]]
    sample = temperature > 0
    new = generate_ids(model, [prompt] * n, eos=[ids["eos"]], pad=ids["eos"],
                       max_new_tokens=max_new, temperature=temperature if sample else 0.0,
                       top_k=(top_k or 0) if sample else 0,
                       top_p=(top_p or 1.0) if sample else 1.0, seed=seed, batch_size=n,
                       suppress=banned, stop_after=(end_id, n_blanks))

    blank_ids = {ids[k] for k in BLANK_TOKENS}
    results = []
    for row in new:
        answers = _split_answers(row, end_id, ids["eos"], n_blanks)
        filled: list[int] = []
        it = iter(answers)
        for t in prompt[:-1]:
            filled += next(it) if t in blank_ids else [t]
        results.append((tok.decode(filled), [tok.decode(a) for a in answers]))
    return results


def _split_answers(generated: list[int], end_id: int, eos_id: int, n: int) -> list[list[int]]:
    """The first `n` answers of a generated infill (token ids), padded with empty answers."""
    answers, cur = [], []
    for t in generated:
        if t == eos_id or len(answers) == n:
            break
        if t == end_id:
            answers.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur and len(answers) < n:
        answers.append(cur)  # ran out of tokens inside an answer: keep what there is
    return answers + [[] for _ in range(n - len(answers))]
