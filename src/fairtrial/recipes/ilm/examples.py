"""ILM training/test examples, written as token shards (fairtrial.ml.causal_lm.shards: the
folder format, `ShardWriter` and the memory-mapped reader `ExampleShards`).

What ilm records per example in items.jsonl (test sets): "item_id", "doc" (the source document:
the scored item), "infill_start" (index of <|start_infill|> in the example: tokens before it are
context, tokens after it are the infilled answers, each ended by <|end_infill|>, then
<|endoftext|>), "n_spans" and "span_types"; meta.json adds the masking stats (mask rates,
span-type counts, ...).

An example's tokens (Donahue et al. 2020, sec. 3):
  masked context (one blank token per span) <|start_infill|> answer_1 <|end_infill|> ... answer_k
  <|end_infill|> <|endoftext|>
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# the shard format, its writer and reader are generic; ilm's modules and tests import them here
from fairtrial.ml.causal_lm.shards import DTYPE, ITEMS, META, ExampleShards, ShardWriter

__all__ = ["DTYPE", "ITEMS", "META", "ExampleShards", "ShardWriter", "build_shards"]

# ----------------------------------------------------------------------------- building examples
#
# Work is done in batches of documents, in worker processes when asked. A batch is tokenised once
# (the fast tokenizer's encode_batch, with character offsets), split and masked at once
# (masking.mask_batch), and every masked example is cut out of the document's token ids with one
# numpy gather: no document is re-tokenised per mask and no Python runs per example. Span
# boundaries are mapped to token boundaries by token end offsets (masking.to_token_spans, the
# per-example reference this is tested against). A batch returns flat arrays, and the parent
# appends them to the shards in input order, so the output does not depend on the number of
# workers (masks depend only on (seed, document id)).

BATCH_DOCS = 2048  # documents per batch: large enough for numpy, small enough for flat memory

_W: dict = {}  # per-process state: backend tokenizer, special ids, masking config


def _init_worker(tokenizer_file: str, cfg: dict) -> None:
    import os as _os

    _os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer

    from fairtrial.recipes.ilm.tokenizer import BLANK_TOKENS, END_INFILL, EOS, START_INFILL

    tok = Tokenizer.from_file(tokenizer_file)
    ids = {k: tok.token_to_id(v) for k, v in BLANK_TOKENS.items()}
    ids.update(start_infill=tok.token_to_id(START_INFILL), end_infill=tok.token_to_id(END_INFILL),
               eos=tok.token_to_id(EOS))
    missing = [k for k, v in ids.items() if v is None]
    if missing:
        raise ValueError(f"{tokenizer_file}: lacks the ILM tokens {missing}")
    _W.update(tok=tok, ids=ids, cfg=cfg)


def _chunks(doc_id: str, text: str, ends: np.ndarray, max_tokens: int | None):
    """Cut a long document at sentence boundaries into pieces of at most max_tokens tokens."""
    if max_tokens is None or len(ends) <= max_tokens:
        yield doc_id, text
        return
    from fairtrial.data.textsplit import sentence_spans

    start_char, k, count = 0, 0, 0
    bounds = [e for _, e in sentence_spans(text)]
    prev_end = 0
    for e in bounds:
        n = int(np.searchsorted(ends, e, side="right"))
        if n - count > max_tokens and prev_end > start_char:
            yield f"{doc_id}#{k}", text[start_char:prev_end]
            k += 1
            start_char, count = prev_end, int(np.searchsorted(ends, prev_end, side="right"))
        prev_end = e
    if start_char < len(text) and text[start_char:].strip():
        yield f"{doc_id}#{k}", text[start_char:]


def _encode(tok, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, token end offsets, tokens per text) of texts, flat."""
    from itertools import chain

    encs = tok.encode_batch(texts, add_special_tokens=False)
    n_tok = np.fromiter((len(e.ids) for e in encs), np.int64, len(encs))
    total = int(n_tok.sum())
    ids = np.fromiter(chain.from_iterable(e.ids for e in encs), np.int64, total)
    ends = np.fromiter(chain.from_iterable(e.offsets for e in encs),
                       np.dtype((np.int64, 2)), total)[:, 1] if total else np.zeros(0, np.int64)
    return ids, ends, n_tok


def _units(tok, batch: list[tuple[str, str]], max_tokens: int | None):
    """The (id, text) units to mask: documents, or pieces of documents longer than max_tokens;
    units without tokens are dropped. Returns (ids, texts, token ids, token ends, tokens per unit,
    the document id of each unit)."""
    ids, ends, n_tok = _encode(tok, [t for _, t in batch])
    docs = [d for d, _ in batch]
    if max_tokens is not None and (n_tok > max_tokens).any():
        starts = np.cumsum(n_tok) - n_tok
        pieces = [(pc, doc_id) for (doc_id, text), s, n in zip(batch, starts, n_tok)
                  for pc in _chunks(doc_id, text, ends[s:s + n], max_tokens)]
        batch, docs = [pc for pc, _ in pieces], [d for _, d in pieces]
        ids, ends, n_tok = _encode(tok, [t for _, t in batch])
    if (n_tok == 0).any():
        keep = n_tok > 0
        batch = [b for b, k in zip(batch, keep) if k]
        docs = [d for d, k in zip(docs, keep) if k]
        n_tok = n_tok[keep]
    return [i for i, _ in batch], [t for _, t in batch], ids, ends, n_tok, docs


def _build_batch(batch: list[tuple[str, str]]):
    """(flat tokens, lengths, records, stats, span counts) of a batch of (id, text)."""
    from fairtrial.recipes.ilm import masking as M

    tok, ids, cfg = _W["tok"], _W["ids"], _W["cfg"]
    mc = M.MaskConfig(kind=cfg["kind"], p=cfg["p"], ngram_max=cfg["ngram_max"])
    unit_ids, texts, tokens, tok_end, n_tok, unit_docs = _units(tok, batch, cfg["max_doc_tokens"])
    fo = M.forest(texts)
    keys = [M.doc_key(cfg["seed"], u) for u in unit_ids]
    ms = M.mask_batch(fo, keys, mc, cfg["n_masks"], cfg["max_retries"], cfg["min_spans"])
    U, E = len(texts), len(ms.ex_doc)

    # char spans -> token ranges [a, b) in the batch's flat token array: token end offsets made
    # global (into the joined text), so one searchsorted serves every document
    tok_start = np.cumsum(n_tok) - n_tok
    gend = tok_end + np.repeat(fo.base, n_tok)
    a = np.searchsorted(gend, ms.span_start, side="right")
    b = np.searchsorted(gend, ms.span_end, side="right")
    kept = b > a  # a span inside one token holds no token end: dropped, as in to_token_spans
    sx, st, a, b = ms.span_ex[kept], ms.span_type[kept], a[kept], b[kept]

    # each example is a list of segments of an extended token table (the batch's tokens followed
    # by the special tokens): for K spans, 4K + 3 segments in this order (slot numbers):
    #   ctx_0 blank_1 ctx_1 ... blank_K ctx_K | START | ans_1 END ... ans_K END | EOS
    #   2r    2r+1                     2K       2K+1    2K+2+2r 2K+3+2r          4K+2
    special = np.asarray([ids[t] for t in M.SPAN_TYPES]
                         + [ids["start_infill"], ids["end_infill"], ids["eos"]], np.int64)
    sp0 = len(tokens)  # blank of type t at sp0 + t; then START, END, EOS
    ext = np.concatenate([tokens, special])
    K = np.bincount(sx, minlength=E)
    masked = np.bincount(sx, weights=b - a, minlength=E).astype(np.int64)
    seg_base = np.cumsum(4 * K + 3) - (4 * K + 3)
    first = np.cumsum(K) - K
    r = np.arange(len(sx)) - first[sx]  # span's rank in its example
    ed = ms.ex_doc
    d_start, d_end = tok_start[ed], tok_start[ed] + n_tok[ed]
    prev_b = np.where(r == 0, d_start[sx], np.roll(b, 1))  # ctx before span r starts after span r-1
    last_b = d_start.copy()
    if len(sx):
        last_b[sx[np.r_[sx[1:] != sx[:-1], True]]] = b[np.r_[sx[1:] != sx[:-1], True]]
    n_seg = int((4 * K + 3).sum())
    src = np.zeros(n_seg, np.int64)
    ln = np.zeros(n_seg, np.int64)

    def put(slot, s, n):
        src[slot] = s
        ln[slot] = n

    sb, ksx = seg_base[sx], K[sx]
    put(sb + 2 * r, prev_b, a - prev_b)                    # context before span r
    put(sb + 2 * r + 1, sp0 + st, 1)                       # its blank
    put(sb + 2 * ksx + 2 + 2 * r, a, b - a)                # its answer
    put(sb + 2 * ksx + 3 + 2 * r, sp0 + 6, 1)              # <|end_infill|>
    put(seg_base + 2 * K, last_b, d_end - last_b)          # context after the last span
    put(seg_base + 2 * K + 1, sp0 + 5, 1)                  # <|start_infill|>
    put(seg_base + 4 * K + 2, sp0 + 7, 1)                  # <|endoftext|>
    out_start = np.cumsum(ln) - ln
    flat = ext[np.repeat(src - out_start, ln) + np.arange(int(ln.sum()))].astype(DTYPE)
    lengths = n_tok[ed] + 2 * K + 2

    # statistics (chars are counted for every span, tokens for the spans kept)
    ex_chars = fo.n_chars[ed]
    span_counts = dict(zip(M.SPAN_TYPES, np.bincount(st, minlength=5).tolist()))
    st_all = {"docs": len(batch), "pieces": U,
              "masked_chars": int((ms.span_end - ms.span_start).sum()),
              "chars": int(ex_chars.sum()), "masked_tokens": int(masked.sum()),
              "tokens": int(n_tok[ed].sum()), "rejected": int(ms.rejected.sum()),
              "no_mask": int((np.bincount(ed, minlength=U) == 0).sum())}
    records: list[dict] = []
    if cfg["records"]:
        per_unit = np.bincount(ed, minlength=U)
        rank = np.arange(E) - (np.cumsum(per_unit) - per_unit)[ed]  # k-th mask of its unit
        infill = (n_tok[ed] - masked + K).tolist()
        types = [[] for _ in range(E)]
        for e, t in zip(sx.tolist(), st.tolist()):
            types[e].append(M.SPAN_TYPES[t])
        for e, (d, k) in enumerate(zip(ed.tolist(), rank.tolist())):
            item = unit_ids[d] if cfg["n_masks"] == 1 else f"{unit_ids[d]}/{k}"
            records.append({"item_id": item, "doc": unit_docs[d], "infill_start": infill[e],
                            "n_spans": len(types[e]), "span_types": types[e]})
    return flat, lengths, records, st_all, span_counts


def build_shards(docs, out: str | Path, tokenizer_file: str | Path, *, kind: str = "hierarchical",
                 p: float = 0.03, ngram_max: int = 8, n_masks: int = 16, max_retries: int = 8,
                 min_spans: int = 1, seed: int = 0, max_doc_tokens: int | None = None,
                 records: bool = False, workers: int = 1, shard_tokens: int = 2**26,
                 progress=None, batch_docs: int = BATCH_DOCS) -> dict:
    """Mask and tokenise `docs` (an iterable of (id, text), streamed) into a shard folder.

    records=True writes items.jsonl (item ids, <|start_infill|> positions): test sets. Returns the
    meta, with stats: n_docs, mask rates (char_mask_rate, token_mask_rate), span_counts, ..."""
    cfg = dict(kind=kind, p=p, ngram_max=ngram_max, n_masks=n_masks, max_retries=max_retries,
               min_spans=min_spans, seed=seed, max_doc_tokens=max_doc_tokens, records=records)

    def batches():
        b = []
        for d in docs:
            b.append(d)
            if len(b) == batch_docs:
                yield b
                b = []
        if b:
            yield b

    totals: dict = {}
    spans_total: dict = {}
    writer = ShardWriter(out, shard_tokens=shard_tokens)
    with writer:
        if workers > 1:
            import multiprocessing as mp
            from collections import deque

            ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(str(tokenizer_file), cfg))

            def ordered():
                # at most 2 batches per worker in flight, taken in input order: memory stays flat
                # (Pool.imap would read the whole input ahead and queue results without bound)
                pending: deque = deque()
                for b in batches():
                    pending.append(pool.apply_async(_build_batch, (b,)))
                    if len(pending) >= 2 * workers:
                        yield pending.popleft().get()
                while pending:
                    yield pending.popleft().get()

            results = ordered()
        else:
            _init_worker(str(tokenizer_file), cfg)
            pool = None
            results = map(_build_batch, batches())
        try:
            for flat, lengths, recs, st, sc in results:
                if lengths.size:
                    if records:
                        writer.add_many(flat, lengths, [r.pop("item_id") for r in recs], recs)
                    else:
                        writer.add_many(flat, lengths)
                for k, v in st.items():
                    totals[k] = totals.get(k, 0) + v
                for k, v in sc.items():
                    spans_total[k] = spans_total.get(k, 0) + v
                if progress is not None:
                    progress(totals["docs"])
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        stats = {
            "n_docs": totals.get("docs", 0), "n_pieces": totals.get("pieces", 0),
            "char_mask_rate": totals.get("masked_chars", 0) / max(totals.get("chars", 0), 1),
            "token_mask_rate": totals.get("masked_tokens", 0) / max(totals.get("tokens", 0), 1),
            "span_counts": spans_total, "rejected_masks": totals.get("rejected", 0),
            "docs_without_mask": totals.get("no_mask", 0),
            "masking": {k: v for k, v in cfg.items() if k != "records"},
        }
        return writer.close(**stats)
