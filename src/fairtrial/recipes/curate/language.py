"""language: keep the declared language, with lingua (lingua-language-detector).

Why lingua and not a fastText LID model: lingua's wheel ships its n-gram models (nothing to
download: this machine and many CI runners have no network), it is maintained, it covers 75
languages, and it is built for short texts (single words, pairs, sentences), which instruction
prompts often are. The fastText LID models on PyPI (fasttext-langdetect, ftlangdetect) download
lid.176.bin on first use. bench/bench_curate_language.py measures lingua's precision and recall for
the declared language by text length on lingua's own test data (27 languages).

A text abstains when lingua returns no language (the top two are closer than
min_relative_distance) or when it is shorter than min_chars after markup is stripped.
"""

from __future__ import annotations

import re
from functools import lru_cache

KEEP, OTHER, ABSTAIN = "keep", "other", "abstain"
_MARKUP = re.compile(r"<[^>\n]{0,200}>|```[a-z]*|\{|\}|\[|\]|\"")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=4)
def detector(min_relative_distance: float = 0.1, candidates: tuple[str, ...] | None = None,
             low_accuracy: bool = False):
    """One lingua detector over all its languages or the candidates (built once per process;
    models load lazily per language as texts need them)."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if candidates is None:
        b = LanguageDetectorBuilder.from_all_languages()
    else:
        b = LanguageDetectorBuilder.from_iso_codes_639_1(*[getattr(IsoCode639_1, c.upper())
                                                          for c in candidates])
    b = b.with_minimum_relative_distance(min_relative_distance)
    if low_accuracy:
        b = b.with_low_accuracy_mode()
    return b.build()


def clean(text: str, max_chars: int) -> str:
    """Markup (tags, code fences, JSON brackets and quotes) out, whitespace collapsed, cut."""
    return _SPACES.sub(" ", _MARKUP.sub(" ", text[: max_chars * 2])).strip()[:max_chars]


def classify(texts: list[str], language: str = "en", *, min_relative_distance: float = 0.1,
             min_chars: int = 20, max_chars: int = 1000,
             candidates: list[str] | None = None) -> tuple[list[str], list[str | None]]:
    """(verdict per text: keep / other / abstain, detected ISO 639-1 code or None)."""
    det = detector(min_relative_distance, tuple(candidates) if candidates else None)
    cleaned = [clean(t, max_chars) for t in texts]
    todo = [i for i, t in enumerate(cleaned) if len(t) >= min_chars]
    found = det.detect_languages_in_parallel_of([cleaned[i] for i in todo]) if todo else []
    codes: list[str | None] = [None] * len(texts)
    for i, lang in zip(todo, found):
        codes[i] = lang.iso_code_639_1.name.lower() if lang is not None else None
    verdicts = [ABSTAIN if c is None else KEEP if c == language else OTHER for c in codes]
    return verdicts, codes
