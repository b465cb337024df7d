"""Hierarchical ILM masking (Donahue, Lee and Liang 2020, sec. 4 "Mask function").

A document is a tree: document > paragraphs > sentences > words. Walking it top-down, each node is
masked with probability p; a masked node's children are not visited. At the word level a trigger
masks an n-gram of n ~ Uniform{1..8} words (clipped at the sentence end; n = 1 is a "word" span,
n > 1 an "ngram" span) and the walk resumes after it. With p = 0.03 about 15% of tokens end up
masked on the paper's data. Single-type maskers ("word", "ngram", "sentence", "paragraph",
"document") run only their own level.

Masks are computed in character offsets (from fairtrial.data.textsplit) and mapped to token ranges
by token end offsets: a span [s, e) takes the tokens whose end lies in (s, e], so a word's leading
space (GPT-2 attaches it to the word's token) goes with the word: "She ate<|blank_word|> cereal".

Speed: the draws of all masks of a document are made at once with numpy, and only the sparse
word-level triggers are walked in Python (the walk must skip triggers inside an earlier n-gram).
Skipping a draw is equivalent to never making it, so the distribution is the paper's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fairtrial.data.textsplit import paragraph_spans, sentence_spans, word_spans

SPAN_TYPES = ("document", "paragraph", "sentence", "ngram", "word")
KINDS = ("hierarchical", *SPAN_TYPES)


@dataclass(frozen=True)
class MaskConfig:
    kind: str = "hierarchical"
    p: float = 0.03
    ngram_max: int = 8

    def level_p(self) -> dict[str, float]:
        k, p = self.kind, self.p
        return {
            "document": p if k in ("hierarchical", "document") else 0.0,
            "paragraph": p if k in ("hierarchical", "paragraph") else 0.0,
            "sentence": p if k in ("hierarchical", "sentence") else 0.0,
            "word": p if k in ("hierarchical", "word", "ngram") else 0.0,
        }

    def ngram_range(self) -> tuple[int, int]:
        if self.kind == "word":
            return 1, 1
        if self.kind == "ngram":
            return 2, max(2, self.ngram_max)
        return 1, self.ngram_max


@dataclass
class DocTree:
    """Character offsets of a document's paragraphs, sentences and words (as int64 arrays)."""
    n_chars: int
    para: np.ndarray      # (P, 2)
    sent: np.ndarray      # (S, 2)
    sent_para: np.ndarray  # (S,) paragraph index of each sentence
    word: np.ndarray      # (W, 2)
    word_sent: np.ndarray  # (W,) sentence index of each word
    sent_word_end: np.ndarray  # (S,) index one past the sentence's last word


def doc_tree(text: str) -> DocTree:
    paras = paragraph_spans(text)
    sents: list[tuple[int, int]] = []
    sent_para: list[int] = []
    for i, (a, b) in enumerate(paras):
        ss = sentence_spans(text, a, b)
        sents.extend(ss)
        sent_para.extend([i] * len(ss))
    words = word_spans(text)
    para = np.asarray(paras, np.int64).reshape(-1, 2)
    sent = np.asarray(sents, np.int64).reshape(-1, 2)
    word = np.asarray(words, np.int64).reshape(-1, 2)
    word_sent = np.searchsorted(sent[:, 0], word[:, 0], side="right") - 1
    word_sent = np.clip(word_sent, 0, max(len(sent) - 1, 0))
    sent_word_end = np.searchsorted(word_sent, np.arange(len(sent)), side="right")
    return DocTree(len(text), para, sent, np.asarray(sent_para, np.int64), word, word_sent,
                   sent_word_end)


def doc_rng(seed: int, doc_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, document id): masks do not change with the order in
    which documents are processed or the number of worker processes."""
    h = hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(h, "little"))


Mask = tuple  # tuple of (type, char_start, char_end), sorted by start


def draw_masks(tree: DocTree, cfg: MaskConfig, rng: np.random.Generator, n: int) -> list[Mask]:
    """n candidate masks (not yet de-duplicated), each a sorted tuple of (type, start, end)."""
    lp = cfg.level_p()
    lo, hi = cfg.ngram_range()
    P, S, W = len(tree.para), len(tree.sent), len(tree.word)
    doc_m = rng.random(n) < lp["document"]
    par_m = (rng.random((n, P)) < lp["paragraph"]) & ~doc_m[:, None]
    sent_m = (rng.random((n, S)) < lp["sentence"]) & ~doc_m[:, None]
    if P and S:
        sent_m &= ~par_m[:, tree.sent_para]
    word_t = rng.random((n, W)) < lp["word"]
    ngram_n = rng.integers(lo, hi + 1, size=(n, W))
    if W and S:
        word_t &= ~sent_m[:, tree.word_sent]
        word_t &= ~(par_m[:, tree.sent_para[tree.word_sent]] if P else False)
    word_t &= ~doc_m[:, None]
    masks = []
    for m in range(n):
        if doc_m[m]:
            masks.append((("document", 0, tree.n_chars),))
            continue
        spans = [("paragraph", int(a), int(b)) for a, b in tree.para[par_m[m]]]
        spans += [("sentence", int(a), int(b)) for a, b in tree.sent[sent_m[m]]]
        nxt = 0
        for w in np.flatnonzero(word_t[m]):
            if w < nxt:
                continue  # inside the previous n-gram
            k = int(min(ngram_n[m, w], tree.sent_word_end[tree.word_sent[w]] - w))
            if k < lo:
                continue  # an ngram-only masker cannot fit a 2+-gram at the sentence end
            end = w + k
            spans.append(("word" if k == 1 else "ngram", int(tree.word[w, 0]),
                          int(tree.word[end - 1, 1])))
            nxt = end
        spans.sort(key=lambda s: s[1])
        masks.append(tuple(spans))
    return masks


def distinct_masks(tree: DocTree, cfg: MaskConfig, rng: np.random.Generator, n_masks: int = 16,
                   max_retries: int = 8, min_spans: int = 1) -> tuple[list[Mask], int]:
    """Up to n_masks distinct masks with at least min_spans spans each, drawing at most
    n_masks * (1 + max_retries) candidates. Returns (masks, n_rejected)."""
    out: list[Mask] = []
    seen: set[Mask] = set()
    rejected = 0
    for _ in range(1 + max_retries):
        for mk in draw_masks(tree, cfg, rng, n_masks):
            if len(mk) < min_spans or mk in seen:
                rejected += 1
                continue
            seen.add(mk)
            out.append(mk)
            if len(out) == n_masks:
                return out, rejected
    return out, rejected


def char_rate(mask: Mask, n_chars: int) -> float:
    return sum(e - s for _, s, e in mask) / max(n_chars, 1)


def to_token_spans(mask: Mask, token_ends: np.ndarray) -> list[tuple[str, int, int]]:
    """Char spans -> token index ranges [i, j): the tokens whose end offset lies in (s, e]."""
    if not mask:
        return []
    starts = np.fromiter((s for _, s, _ in mask), np.int64, len(mask))
    ends = np.fromiter((e for _, _, e in mask), np.int64, len(mask))
    i = np.searchsorted(token_ends, starts, side="right")
    j = np.searchsorted(token_ends, ends, side="right")
    return [(t, int(a), int(b)) for (t, _, _), a, b in zip(mask, i, j) if b > a]


def build_example(tokens: list[int], spans: list[tuple[str, int, int]], blank_ids: dict[str, int],
                  start_infill: int, end_infill: int, eos: int) -> tuple[list[int], int]:
    """context-with-blanks <|start_infill|> (answer <|end_infill|>)* <|endoftext|>.

    Returns (token ids, index of <|start_infill|>)."""
    ctx: list[int] = []
    answers: list[int] = []
    pos = 0
    for t, a, b in spans:
        ctx += tokens[pos:a]
        ctx.append(blank_ids[t])
        answers += tokens[a:b]
        answers.append(end_infill)
        pos = b
    ctx += tokens[pos:]
    start = len(ctx)
    ctx.append(start_infill)
    ctx += answers
    ctx.append(eos)
    return ctx, start
