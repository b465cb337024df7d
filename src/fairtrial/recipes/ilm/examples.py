"""ILM training/test examples and the on-disk shard format they live in.

Shard format (a folder; the model side reads it with `ExampleShards`):

  meta.json      {"n_examples": int, "n_tokens": int, "dtype": "uint32",
                  "shards": [{"tokens": "tokens-00000.bin", "offsets": "offsets-00000.npy", "n": N}, ...],
                  "items": "items.jsonl" (present when per-example records were written),
                  ...stats (mask rates, span-type counts, ...)}
  tokens-K.bin   flat little-endian np.uint32 token ids of the shard's examples, back to back
  offsets-K.npy  np.int64, length N+1: example j of shard K is tokens[offsets[j]:offsets[j+1]]
  items.jsonl    optional, one JSON object per example in global order: {"item_id": str, ...};
                 test sets add "infill_start" (index of <|start_infill|> in the example: tokens
                 before it are context, tokens after it are the infilled answers, each ended by
                 <|end_infill|>, then <|endoftext|>), "n_spans" and "span_types"

meta.json is written last: a folder without it is incomplete and `ExampleShards` refuses it.

An example's tokens (Donahue et al. 2020, sec. 3):
  masked context (one blank token per span) <|start_infill|> answer_1 <|end_infill|> ... answer_k
  <|end_infill|> <|endoftext|>
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DTYPE = np.uint32
META = "meta.json"
ITEMS = "items.jsonl"


class ShardWriter:
    """Append examples (token-id sequences) to memory-mappable shards.

    Memory stays bounded: tokens go straight to disk; only the current shard's offsets are held.
    Files are written under temporary names and renamed when a shard is complete; meta.json comes
    last, in `close()`.
    """

    def __init__(self, folder: str | Path, shard_tokens: int = 2**26):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / META).exists():
            raise ValueError(f"{self.folder}: already holds shards (meta.json exists)")
        self.shard_tokens = int(shard_tokens)
        self.shards: list[dict] = []
        self.n_examples = 0
        self.n_tokens = 0
        self._items = None
        self._n_items = 0
        self._open_shard()

    def _open_shard(self):
        k = len(self.shards)
        self._tok_name = f"tokens-{k:05d}.bin"
        self._off_name = f"offsets-{k:05d}.npy"
        self._tok_file = open(self.folder / (self._tok_name + ".tmp"), "wb")
        self._offsets = [0]

    def _close_shard(self):
        self._tok_file.close()
        n = len(self._offsets) - 1
        np.save(self.folder / (self._off_name + ".tmp.npy"), np.asarray(self._offsets, np.int64))
        os.replace(self.folder / (self._off_name + ".tmp.npy"), self.folder / self._off_name)
        os.replace(self.folder / (self._tok_name + ".tmp"), self.folder / self._tok_name)
        self.shards.append({"tokens": self._tok_name, "offsets": self._off_name, "n": n})

    def add(self, ids, item_id: str | None = None, record: dict | None = None) -> None:
        """Append one example. `item_id` and `record` (extra JSON fields) go to items.jsonl; give
        them for every example or for none."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError("an example must be a non-empty 1-D sequence of token ids")
        if arr.dtype != DTYPE:
            if arr.min() < 0 or arr.max() > np.iinfo(DTYPE).max:
                raise ValueError("token ids must fit in uint32")
            arr = arr.astype(DTYPE)
        cur = self._offsets[-1]
        if cur > 0 and cur + arr.size > self.shard_tokens:
            self._close_shard()
            self._open_shard()
            cur = 0
        self._tok_file.write(arr.astype("<u4", copy=False).tobytes())
        self._offsets.append(cur + int(arr.size))
        if item_id is not None or record is not None:
            if self._items is None:
                if self.n_examples:
                    raise ValueError("item ids must be given for every example or for none")
                self._items = open(self.folder / (ITEMS + ".tmp"), "w", encoding="utf-8")
            rec = {"item_id": None if item_id is None else str(item_id), **(record or {})}
            self._items.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self._n_items += 1
        elif self._items is not None:
            raise ValueError("item ids must be given for every example or for none")
        self.n_examples += 1
        self.n_tokens += int(arr.size)

    def add_many(self, flat, lengths, item_ids=None, records=None) -> None:
        """Append many examples at once: `flat` holds them back to back, `lengths` their sizes."""
        flat = np.asarray(flat, DTYPE)
        lengths = np.asarray(lengths, np.int64)
        if item_ids is not None or records is not None or (
                self._offsets[-1] + flat.size > self.shard_tokens and self._offsets[-1] > 0):
            # the per-example path handles item records and shard boundaries
            pos = 0
            for k, n in enumerate(lengths):
                self.add(flat[pos:pos + n], None if item_ids is None else item_ids[k],
                         None if records is None else records[k])
                pos += int(n)
            return
        if (lengths <= 0).any() or int(lengths.sum()) != flat.size:
            raise ValueError("lengths must be positive and sum to the number of tokens")
        if self._items is not None:
            raise ValueError("item ids must be given for every example or for none")
        self._tok_file.write(flat.astype("<u4", copy=False).tobytes())
        self._offsets.extend((self._offsets[-1] + np.cumsum(lengths)).tolist())
        self.n_examples += int(lengths.size)
        self.n_tokens += int(flat.size)

    def close(self, **stats) -> dict:
        """Finish the last shard and write meta.json (with `stats` merged in). Returns the meta."""
        self._close_shard()
        meta = {"n_examples": self.n_examples, "n_tokens": self.n_tokens, "dtype": "uint32",
                "shards": self.shards}
        if self._items is not None:
            self._items.close()
            os.replace(self.folder / (ITEMS + ".tmp"), self.folder / ITEMS)
            meta["items"] = ITEMS
        meta.update(stats)
        tmp = self.folder / (META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.replace(tmp, self.folder / META)
        return meta

    def abort(self) -> None:
        """Remove everything this writer wrote (used when building fails half-way)."""
        for f in (self._tok_file, self._items):
            if f is not None and not f.closed:
                f.close()
        for p in self.folder.iterdir():
            if p.name.startswith(("tokens-", "offsets-", "items.jsonl", META)):
                p.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()


class ExampleShards:
    """Read-only, memory-mapped view of a shard folder: `shards[i]` is an np.uint32 array view."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_path = self.folder / META
        if not meta_path.exists():
            raise ValueError(f"{self.folder}: no {META}; not a complete example shard folder")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("dtype") != "uint32":
            raise ValueError(f"{meta_path}: dtype {self.meta.get('dtype')!r}; expected 'uint32'")
        self._tokens, self._offsets = [], []
        for s in self.meta["shards"]:
            off = np.load(self.folder / s["offsets"], mmap_mode="r")
            if len(off) != s["n"] + 1:
                raise ValueError(f"{self.folder / s['offsets']}: {len(off)} offsets for {s['n']} examples")
            path = self.folder / s["tokens"]
            n_tok = int(off[-1])
            if path.stat().st_size != 4 * n_tok:
                raise ValueError(f"{path}: {path.stat().st_size} bytes; expected {4 * n_tok}")
            # np.memmap refuses empty files; an empty shard only happens for an empty set
            tok = (np.memmap(path, dtype="<u4", mode="r", shape=(n_tok,)) if n_tok
                   else np.zeros(0, DTYPE))
            self._tokens.append(tok)
            self._offsets.append(off)
        self._starts = np.cumsum([0] + [s["n"] for s in self.meta["shards"]])
        self._items: list[dict] | None = None

    def __len__(self) -> int:
        return int(self.meta["n_examples"])

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"example {i} out of range ({n} examples)")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        j = i - int(self._starts[k])
        off = self._offsets[k]
        return self._tokens[k][int(off[j]):int(off[j + 1])]

    def __iter__(self):
        for k, off in enumerate(self._offsets):
            tok = self._tokens[k]
            for j in range(len(off) - 1):
                yield tok[int(off[j]):int(off[j + 1])]

    def lengths(self) -> np.ndarray:
        if not self._offsets:
            return np.zeros(0, np.int64)
        return np.concatenate([np.diff(np.asarray(o)) for o in self._offsets]).astype(np.int64)

    def items(self) -> list[dict]:
        """The per-example records of items.jsonl (empty list when none were written)."""
        if self._items is None:
            name = self.meta.get("items")
            if not name:
                self._items = []
            else:
                with open(self.folder / name, encoding="utf-8") as f:
                    self._items = [json.loads(line) for line in f]
        return self._items

    def item_ids(self) -> list[str]:
        items = self.items()
        if not items:
            return [str(i) for i in range(len(self))]
        return [r["item_id"] for r in items]


# ----------------------------------------------------------------------------- building examples
#
# Documents are tokenised once; each mask then cuts the token list (see masking.py), so 16 masks
# cost one tokenisation. Work is done in batches of documents, in worker processes when asked;
# a batch returns flat arrays, and the parent appends them to the shards in input order, so the
# output does not depend on the number of workers (masks depend only on (seed, document id)).

BATCH_DOCS = 512

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


def _chunks(doc_id: str, text: str, toks: list[int], ends: np.ndarray, max_tokens: int | None):
    """Cut a long document at sentence boundaries into pieces of at most max_tokens tokens."""
    if max_tokens is None or len(toks) <= max_tokens:
        yield doc_id, text, 0
        return
    from fairtrial.data.textsplit import sentence_spans

    start_char, k, count = 0, 0, 0
    bounds = [e for _, e in sentence_spans(text)]
    prev_end = 0
    for e in bounds:
        n = int(np.searchsorted(ends, e, side="right"))
        if n - count > max_tokens and prev_end > start_char:
            yield f"{doc_id}#{k}", text[start_char:prev_end], start_char
            k += 1
            start_char, count = prev_end, int(np.searchsorted(ends, prev_end, side="right"))
        prev_end = e
    if start_char < len(text) and text[start_char:].strip():
        yield f"{doc_id}#{k}", text[start_char:], start_char


def _build_batch(batch: list[tuple[str, str]]):
    """(flat tokens, lengths, records, stats) of the examples of a batch of (id, text)."""
    from fairtrial.recipes.ilm import masking as M

    tok, ids, cfg = _W["tok"], _W["ids"], _W["cfg"]
    mc = M.MaskConfig(kind=cfg["kind"], p=cfg["p"], ngram_max=cfg["ngram_max"])
    blank = {k: ids[k] for k in M.SPAN_TYPES}
    encs = tok.encode_batch([t for _, t in batch], add_special_tokens=False)
    flat: list[int] = []
    lengths: list[int] = []
    records: list[dict] = []
    span_counts = dict.fromkeys(M.SPAN_TYPES, 0)
    st = {"docs": 0, "pieces": 0, "masked_chars": 0, "chars": 0, "masked_tokens": 0, "tokens": 0,
          "rejected": 0, "no_mask": 0}
    for (doc_id, text), enc in zip(batch, encs):
        st["docs"] += 1
        all_ids = enc.ids
        all_ends = np.fromiter((e for _, e in enc.offsets), np.int64, len(all_ids))
        for piece_id, piece, off in _chunks(doc_id, text, all_ids, all_ends, cfg["max_doc_tokens"]):
            if off or len(piece) != len(text):
                e2 = tok.encode(piece, add_special_tokens=False)
                toks, ends = e2.ids, np.fromiter((e for _, e in e2.offsets), np.int64, len(e2.ids))
            else:
                toks, ends = all_ids, all_ends
            if not toks:
                continue
            st["pieces"] += 1
            tree = M.doc_tree(piece)
            masks, rejected = M.distinct_masks(tree, mc, M.doc_rng(cfg["seed"], piece_id),
                                               cfg["n_masks"], cfg["max_retries"], cfg["min_spans"])
            st["rejected"] += rejected
            if not masks:
                st["no_mask"] += 1
            for k, mk in enumerate(masks):
                spans = M.to_token_spans(mk, ends)
                ex, start = M.build_example(toks, spans, blank, ids["start_infill"],
                                            ids["end_infill"], ids["eos"])
                flat += ex
                lengths.append(len(ex))
                for t, _, _ in spans:
                    span_counts[t] += 1
                st["masked_chars"] += sum(e - s for _, s, e in mk)
                st["chars"] += len(piece)
                st["masked_tokens"] += sum(b - a for _, a, b in spans)
                st["tokens"] += len(toks)
                if cfg["records"]:
                    item = piece_id if cfg["n_masks"] == 1 else f"{piece_id}/{k}"
                    records.append({"item_id": item, "infill_start": start, "n_spans": len(spans),
                                    "span_types": [t for t, _, _ in spans]})
    return np.asarray(flat, DTYPE), np.asarray(lengths, np.int64), records, st, span_counts


def build_shards(docs, out: str | Path, tokenizer_file: str | Path, *, kind: str = "hierarchical",
                 p: float = 0.03, ngram_max: int = 8, n_masks: int = 16, max_retries: int = 8,
                 min_spans: int = 1, seed: int = 0, max_doc_tokens: int | None = None,
                 records: bool = False, workers: int = 1, shard_tokens: int = 2**26,
                 progress=None) -> dict:
    """Mask and tokenise `docs` (an iterable of (id, text), streamed) into a shard folder.

    records=True writes items.jsonl (item ids, <|start_infill|> positions): test sets. Returns the
    meta, with stats: n_docs, mask rates (char_mask_rate, token_mask_rate), span_counts, ..."""
    cfg = dict(kind=kind, p=p, ngram_max=ngram_max, n_masks=n_masks, max_retries=max_retries,
               min_spans=min_spans, seed=seed, max_doc_tokens=max_doc_tokens, records=records)

    def batches():
        b = []
        for d in docs:
            b.append(d)
            if len(b) == BATCH_DOCS:
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

            ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(str(tokenizer_file), cfg))
            # imap keeps input order; a bounded chunk of batches in flight keeps memory flat
            results = pool.imap(_build_batch, batches(), chunksize=1)
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
