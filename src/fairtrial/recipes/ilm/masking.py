"""Hierarchical ILM masking (Donahue, Lee and Liang 2020, sec. 4 "Mask function").

A document is a tree: document > paragraphs > sentences > words. Walking it top-down, each node is
masked with probability p; a masked node's children are not visited. At the word level each word
triggers with probability p; a trigger is, with probability ngram_p = 0.5, an "ngram" span of
n ~ Uniform{1..8} words (clipped at the sentence end), else a single "word" span, and the walk
resumes after it. This is the rule of the paper's released masker (MaskHierarchical, with
mask_word_ngram_p = 0.5); with p = 0.03 about 15% of tokens end up masked. Single-type maskers ("word", "ngram", "sentence", "paragraph",
"document") run only their own level. Each document gets up to n_masks distinct masks with at
least min_spans spans, drawn in rounds of n_masks candidates (at most 1 + max_retries rounds).

Masks are computed in character offsets (from fairtrial.data.textsplit) and mapped to token ranges
by token end offsets: a span [s, e) takes the tokens whose end lies in (s, e], so a word's leading
space (GPT-2 attaches it to the word's token) goes with the word: "She ate<|blank_word|> cereal".
A span that holds no token end (inside one token) is dropped.

Speed: a whole batch of documents is masked at once with numpy (`mask_batch`); no Python runs per
document or per mask. That needs random numbers that depend only on (seed, document id, candidate,
node) and not on how many draws came before, so they are a counter-based hash (splitmix64 of the
document's key and the draw's coordinates) instead of a stateful generator: masks do not change with
batch size, the number of workers, or the order of documents. The word-level walk ("resume after the
n-gram") is resolved for all masks together by fixed-point iteration (see `_resolve_ngrams`).
`doc_tree` and `distinct_masks` are the same code for one document, for tests and inspection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fairtrial.data.textsplit import batch_spans

SPAN_TYPES = ("document", "paragraph", "sentence", "ngram", "word")  # type codes 0..4
KINDS = ("hierarchical", *SPAN_TYPES)
_DOC, _PARA, _SENT, _NGRAM, _WORD = range(5)


@dataclass(frozen=True)
class MaskConfig:
    kind: str = "hierarchical"
    p: float = 0.03
    ngram_max: int = 8
    ngram_p: float = 0.5
    """Share of word-level triggers that mask an n-gram rather than one word (hierarchical)."""

    def ngram_share(self) -> float:
        return {"hierarchical": self.ngram_p, "ngram": 1.0}.get(self.kind, 0.0)

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
class Forest:
    """The trees of a batch of documents, flat. Character offsets are into the batch's joined text
    (document d starts at base[d]); node indices are global over the batch."""
    base: np.ndarray       # (D,)
    n_chars: np.ndarray    # (D,)
    para: np.ndarray       # (P, 2)
    sent: np.ndarray       # (S, 2)
    sent_para: np.ndarray  # (S,) paragraph of each sentence
    word: np.ndarray       # (W, 2)
    word_sent: np.ndarray  # (W,) sentence of each word
    sent_word_end: np.ndarray  # (S,) one past the sentence's last word
    doc_para: np.ndarray   # (D + 1,) document d's paragraphs are doc_para[d]:doc_para[d + 1]
    doc_sent: np.ndarray   # (D + 1,)
    doc_word: np.ndarray   # (D + 1,)

    @property
    def n_docs(self) -> int:
        return len(self.base)


def forest(texts: list[str]) -> Forest:
    sp = batch_spans(texts)
    base, para, sent, word = sp["base"], sp["para"], sp["sent"], sp["word"]
    n_chars = np.fromiter(map(len, texts), np.int64, len(texts))

    def per_doc(spans):  # documents are in order, so each one's nodes are a contiguous range
        return np.searchsorted(spans[:, 0], np.append(base, np.iinfo(np.int64).max), side="left")

    sent_para = np.searchsorted(para[:, 0], sent[:, 0], side="right") - 1
    word_sent = np.searchsorted(sent[:, 0], word[:, 0], side="right") - 1
    word_sent = np.maximum(word_sent, 0)
    sent_word_end = np.searchsorted(word_sent, np.arange(len(sent)), side="right")
    return Forest(base, n_chars, para, sent, sent_para, word, word_sent, sent_word_end,
                  per_doc(para), per_doc(sent), per_doc(word))


def doc_tree(text: str) -> Forest:
    """The tree of one document (a Forest of one)."""
    return forest([text])


def doc_key(seed: int, doc_id: str) -> int:
    """The 64-bit key of a document's random draws: they depend only on (seed, document id)."""
    h = hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


# ----------------------------------------------------------------------------- random numbers

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit hash (Steele, Lea, Flood 2014). Hand-written
    because numpy's generators are stateful: they cannot give draw #k of document d directly."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _uniform(key: np.ndarray, cand: np.ndarray, tag: int, node: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) draw for (document key, candidate mask, node level tag, node index)."""
    ctr = ((cand.astype(np.uint64) * np.uint64(8) + np.uint64(tag)) << np.uint64(32)) \
        + node.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = _mix64(key.astype(np.uint64) + ctr * _GOLDEN)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For items with `counts` children each: (item of each child, child's index in its item)."""
    counts = np.asarray(counts, np.int64)
    item = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum(counts) - counts
    return item, np.arange(len(item), dtype=np.int64) - start[item]


# ----------------------------------------------------------------------------- masking

@dataclass
class MaskSet:
    """Accepted masks of a batch. Example e masks document ex_doc[e]; its spans are
    span_ex == e (sorted by start), with type codes (index into SPAN_TYPES) and char offsets."""
    ex_doc: np.ndarray     # (E,) sorted
    span_ex: np.ndarray    # (N,) sorted
    span_type: np.ndarray  # (N,)
    span_start: np.ndarray  # (N,) joined-text offsets
    span_end: np.ndarray   # (N,)
    rejected: np.ndarray   # (D,) candidates rejected (empty / too few spans / duplicate)


def _bernoulli_hits(ckey, cand_k, n: np.ndarray, p: float):
    """Positions i < n[c] hit by independent Bernoulli(p) trials, for every candidate c, as
    (candidate, position) sorted by both. Hit j + 1 is hit j plus a geometric gap
    1 + floor(log(1 - u) / log(1 - p)), u = draw (c, 3, j); gaps are drawn in blocks until every
    candidate has passed its n."""
    if p <= 0 or not len(n):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if p >= 1:
        return _expand(n)
    block = max(4, int(np.ceil(p * float(n.max()) * 1.5)) + 4)
    logq = np.log1p(-p)
    cands = np.arange(len(n), dtype=np.int64)
    pos = np.full(len(n), -1, np.int64)  # last hit so far
    done = 0  # gaps drawn so far per live candidate
    hit_c, hit_i = [], []
    while len(cands):
        c = np.repeat(cands, block)
        j = np.tile(np.arange(done, done + block, dtype=np.int64), len(cands))
        u = _uniform(ckey[c], cand_k[c], 3, j).reshape(len(cands), block)
        gap = 1 + np.floor(np.log1p(-u) / logq).astype(np.int64)
        at = pos[cands, None] + np.cumsum(gap, axis=1)
        inside = at < n[cands, None]
        rc, rj = np.nonzero(inside)
        hit_c.append(cands[rc])
        hit_i.append(at[rc, rj])
        pos[cands] = at[:, -1]
        cands = cands[pos[cands] < n[cands]]
        done += block
    c, i = np.concatenate(hit_c), np.concatenate(hit_i)
    o = np.lexsort((i, c))
    return c[o], i[o]


def _resolve_ngrams(group: np.ndarray, w: np.ndarray, end: np.ndarray, valid: np.ndarray):
    """Which word triggers start an n-gram: the walk skips a trigger that lies inside an earlier
    accepted n-gram of the same mask. Triggers are sorted by (group, w). The sequential rule
    (accept j iff no accepted i < j of its group ends after w_j) is a triangular system; iterating
    it from "all valid accepted" fixes one more trigger per step along each chain of overlaps, and
    its fixed point is the sequential answer. Chains are short (triggers are sparse)."""
    big = np.int64(max(int(end.max(initial=0)), int(w.max(initial=0))) + 1)
    kw = group * big + w
    floor = group * big  # neutral for a running max within the group
    acc = valid.copy()
    while True:
        kend = np.where(acc, group * big + end, floor)
        before = np.empty_like(kend)
        if kend.size:
            before[0] = -1
            np.maximum.accumulate(kend[:-1], out=before[1:])
        new = valid & (before <= kw)
        if np.array_equal(new, acc):
            return acc
        acc = new


def _draw(fo: Forest, keys: np.ndarray, cfg: MaskConfig, docs: np.ndarray, rnd: int, n: int):
    """Candidates of round `rnd` for `docs`: n per document. Returns (cand_doc, cand_index) and
    the spans (cand, type, start, end) with cand indexing the returned candidate arrays."""
    lp = cfg.level_p()
    lo, hi = cfg.ngram_range()
    cand_doc = np.repeat(docs, n)
    cand_k = np.tile(np.arange(n, dtype=np.int64), len(docs)) + rnd * n  # index over all rounds
    ckey = keys[cand_doc]
    C = len(cand_doc)
    zero = np.zeros(C, np.int64)
    doc_m = _uniform(ckey, cand_k, 0, zero) < lp["document"]

    # paragraphs: (candidate, paragraph) pairs
    npar = fo.doc_para[cand_doc + 1] - fo.doc_para[cand_doc]
    pc, pl = _expand(npar)
    par_m = (_uniform(ckey[pc], cand_k[pc], 1, pl) < lp["paragraph"]) & ~doc_m[pc]
    par_pos = np.cumsum(npar) - npar  # where candidate c's paragraphs start in par_m

    nsen = fo.doc_sent[cand_doc + 1] - fo.doc_sent[cand_doc]
    sc, sl = _expand(nsen)
    gs = fo.doc_sent[cand_doc[sc]] + sl
    sent_m = (_uniform(ckey[sc], cand_k[sc], 2, sl) < lp["sentence"]) & ~doc_m[sc]
    if len(gs):
        sent_m &= ~par_m[par_pos[sc] + fo.sent_para[gs] - fo.doc_para[cand_doc[sc]]]
    sen_pos = np.cumsum(nsen) - nsen

    # word triggers: a Bernoulli(p) draw per word is a run of geometric gaps between hits, so only
    # the ~p * W hits are drawn (the j-th gap of candidate c is draw (c, 3, j))
    nword = fo.doc_word[cand_doc + 1] - fo.doc_word[cand_doc]
    tc, tl = _bernoulli_hits(ckey, cand_k, nword, lp["word"])
    gw = fo.doc_word[cand_doc[tc]] + tl
    ts = fo.word_sent[gw]
    local_s = ts - fo.doc_sent[cand_doc[tc]]
    free = ~doc_m[tc] & ~sent_m[sen_pos[tc] + local_s]
    free &= ~par_m[par_pos[tc] + fo.sent_para[ts] - fo.doc_para[cand_doc[tc]]]
    tc, tl, gw, ts = tc[free], tl[free], gw[free], ts[free]
    is_ng = _uniform(ckey[tc], cand_k[tc], 5, tl) < cfg.ngram_share()
    ngram = lo + np.floor(_uniform(ckey[tc], cand_k[tc], 4, tl) * (hi - lo + 1)).astype(np.int64)
    k = np.minimum(np.where(is_ng, ngram, 1), fo.sent_word_end[ts] - gw)
    acc = _resolve_ngrams(tc, gw, gw + k, k >= lo)
    tc, gw, k, is_ng = tc[acc], gw[acc], k[acc], is_ng[acc]

    dm = np.flatnonzero(doc_m)
    pm = np.flatnonzero(par_m)
    sm = np.flatnonzero(sent_m)
    gp = fo.doc_para[cand_doc[pc[pm]]] + pl[pm]
    span_c = np.concatenate([dm, pc[pm], sc[sm], tc])
    span_t = np.concatenate([np.full(len(dm), _DOC), np.full(len(pm), _PARA),
                             np.full(len(sm), _SENT), np.where(is_ng, _NGRAM, _WORD)])
    span_s = np.concatenate([fo.base[cand_doc[dm]], fo.para[gp, 0], fo.sent[gs[sm], 0],
                             fo.word[gw, 0]])
    span_e = np.concatenate([fo.base[cand_doc[dm]] + fo.n_chars[cand_doc[dm]], fo.para[gp, 1],
                             fo.sent[gs[sm], 1], fo.word[gw + k - 1, 1]])
    return cand_doc, cand_k, (span_c.astype(np.int64), span_t.astype(np.int64), span_s, span_e)


def mask_batch(fo: Forest, keys, cfg: MaskConfig, n_masks: int = 16, max_retries: int = 8,
               min_spans: int = 1) -> MaskSet:
    """Up to n_masks distinct masks per document, each with at least min_spans spans, drawing at
    most n_masks * (1 + max_retries) candidates (rounds of n_masks; a document leaves once full).
    `keys`: doc_key(seed, id) of each document."""
    keys = np.asarray(keys, np.uint64)
    D = fo.n_docs
    have = np.zeros(D, np.int64)
    rejected = np.zeros(D, np.int64)
    seen_doc, seen_hash = np.zeros(0, np.int64), np.zeros(0, np.uint64)
    out = []  # (cand_doc, cand_k, spans) of accepted candidates, per round
    docs = np.arange(D, dtype=np.int64)
    for rnd in range(1 + max_retries):
        if not len(docs):
            break
        cand_doc, cand_k, (sc, st, ss, se) = _draw(fo, keys, cfg, docs, rnd, n_masks)
        C = len(cand_doc)
        n_spans = np.bincount(sc, minlength=C)
        # a mask's identity: an order-free sum of hashes of its spans (type, start, end)
        local = ss - fo.base[cand_doc[sc]]
        with np.errstate(over="ignore"):
            sh = _mix64((st.astype(np.uint64) << np.uint64(58))
                        ^ (local.astype(np.uint64) << np.uint64(29))
                        ^ (se - ss).astype(np.uint64))
        h = np.zeros(C, np.uint64)
        np.add.at(h, sc, sh)
        # first occurrence of each (doc, hash) among earlier acceptances and this round
        all_doc = np.concatenate([seen_doc, cand_doc])
        all_hash = np.concatenate([seen_hash, h])
        order = np.lexsort((np.arange(len(all_doc)), all_hash, all_doc))
        dup_sorted = np.zeros(len(order), bool)
        dup_sorted[1:] = (all_doc[order][1:] == all_doc[order][:-1]) & \
                         (all_hash[order][1:] == all_hash[order][:-1])
        dup = np.empty(len(order), bool)
        dup[order] = dup_sorted
        ok = ~dup[len(seen_doc):] & (n_spans >= min_spans)
        # take them in order until the document has n_masks
        ok_i = ok.astype(np.int64)
        cum = np.cumsum(ok_i)
        grp_start = np.arange(0, C, n_masks)
        before = np.repeat(cum[grp_start] - ok_i[grp_start], n_masks)
        count = have[cand_doc] + cum - before  # acceptances so far, this one included
        take = ok & (count <= n_masks)
        # rejected: the bad candidates looked at before the document filled up
        looked = (count - ok_i) < n_masks
        np.add.at(rejected, cand_doc, (looked & ~ok).astype(np.int64))
        have += np.bincount(cand_doc, weights=take, minlength=D).astype(np.int64)
        ti = np.flatnonzero(take)
        remap = np.full(C, -1, np.int64)
        remap[ti] = np.arange(len(ti))
        keep = take[sc]
        out.append((cand_doc[ti], cand_k[ti],
                    (remap[sc[keep]], st[keep], ss[keep], se[keep])))
        seen_doc = np.concatenate([seen_doc, cand_doc[ti]])
        seen_hash = np.concatenate([seen_hash, h[ti]])
        docs = docs[have[docs] < n_masks]

    # examples in (document, candidate index) order; spans in (example, start) order
    ex_doc, ex_k, sp = [], [], [[], [], [], []]
    n_ex = 0
    for cd, ck, (sc, st, ss, se) in out:
        ex_doc.append(cd)
        ex_k.append(ck)
        sp[0].append(sc + n_ex)
        sp[1].append(st)
        sp[2].append(ss)
        sp[3].append(se)
        n_ex += len(cd)
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))
    ex_doc, ex_k = cat(ex_doc), cat(ex_k)
    order = np.lexsort((ex_k, ex_doc))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    span_ex, span_t, span_s, span_e = (cat(x) for x in sp)
    span_ex = rank[span_ex] if len(span_ex) else span_ex
    so = np.lexsort((span_s, span_ex))
    return MaskSet(ex_doc[order], span_ex[so], span_t[so], span_s[so], span_e[so], rejected)


Mask = tuple  # tuple of (type, char_start, char_end), sorted by start


def distinct_masks(tree: Forest, cfg: MaskConfig, key: int, n_masks: int = 16,
                   max_retries: int = 8, min_spans: int = 1) -> tuple[list[Mask], int]:
    """`mask_batch` for one document (a Forest of one) as readable tuples: (masks, n_rejected)."""
    ms = mask_batch(tree, [key], cfg, n_masks, max_retries, min_spans)
    b = int(tree.base[0])
    masks: list[list] = [[] for _ in range(len(ms.ex_doc))]
    for e, t, s, en in zip(ms.span_ex.tolist(), ms.span_type.tolist(), ms.span_start.tolist(),
                           ms.span_end.tolist()):
        masks[e].append((SPAN_TYPES[t], s - b, en - b))
    return [tuple(m) for m in masks], int(ms.rejected[0])


def char_rate(mask: Mask, n_chars: int) -> float:
    return sum(e - s for _, s, e in mask) / max(n_chars, 1)


# ----------------------------------------------------------------------------- one example
# The plain per-example versions of what examples.py does for a whole batch with numpy; kept as
# the readable definition and as the reference the vectorised builder is tested against.

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
