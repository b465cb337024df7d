"""Token shards: many variable-length token-id sequences (training or test examples) on disk,
memory-mapped back, with optional per-example records. Any causal-LM recipe can write its examples
with `ShardWriter` and hand `ExampleShards` to the training loop (train.py reads `.lengths()`
without touching the tokens) or to scoring.

Shard format (a folder):

  meta.json      {"n_examples": int, "n_tokens": int, "dtype": "uint32",
                  "shards": [{"tokens": "tokens-00000.bin", "offsets": "offsets-00000.npy",
                              "n": N}, ...],
                  "items": "items.jsonl" (present when per-example records were written),
                  ...the writer's stats (`close(**stats)`)}
  tokens-K.bin   flat little-endian np.uint32 token ids of the shard's examples, back to back
  offsets-K.npy  np.int64, length N+1: example j of shard K is tokens[offsets[j]:offsets[j+1]]
  items.jsonl    optional, one JSON object per example in global order: {"item_id": str, ...}
                 plus whatever the recipe records ("doc": the source document, ...)

meta.json is written last: a folder without it is incomplete and `ExampleShards` refuses it.
Why not `datasets`' Arrow files: a shard folder is written by a streaming, bounded-memory writer
from worker processes in input order and read with two np.memmap calls, which is all the loop needs.
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
        if item_ids is not None or records is not None:
            # the per-example path writes the item records
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
        # as `add` one by one: an example that does not fit starts a new shard (unless the shard
        # is empty), written in whole runs of examples
        ends = np.cumsum(lengths)
        i = 0
        while i < lengths.size:
            cur = self._offsets[-1]
            done = int(ends[i - 1]) if i else 0
            j = int(np.searchsorted(ends, done + self.shard_tokens - cur, side="right"))
            if j == i:
                if cur > 0:
                    self._close_shard()
                    self._open_shard()
                    continue
                j = i + 1  # one example larger than a shard gets a shard of its own
            self._tok_file.write(flat[done:int(ends[j - 1])].astype("<u4", copy=False).tobytes())
            self._offsets.extend((cur + ends[i:j] - done).tolist())
            self.n_examples += j - i
            self.n_tokens += int(ends[j - 1]) - done
            i = j

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

    def doc_ids(self) -> list[str]:
        """The source document of each example: a document cut into pieces (max_doc_tokens) or
        masked several times gives several examples of one document. Records written before the
        "doc" field existed fall back to the item id."""
        items = self.items()
        if not items:
            return self.item_ids()
        return [r.get("doc", r["item_id"]) for r in items]
