"""Batched generation: left padding, the chat template, greedy or seeded sampling, stop strings.

    generate(model, tok, [[{"role": "user", "content": "What is 2 + 2?"}], "Once upon a time"],
             max_new_tokens=32, temperature=0.0, stop=["\\n\\n"])

A prompt is a list of chat messages (rendered with `tokenizer.apply_chat_template`, with the
assistant turn opened) or a plain string (used as it is). Prompts are padded on the left, so
every row's last prompt token sits at the same position and the new tokens follow it directly.

Only what is passed here decides the output: eos and pad ids come from the model and tokenizer,
the settings from the arguments, never from the model's saved `generation_config.json`, whose
sampling defaults (a hub model's temperature, repetition penalty) would otherwise change results
without appearing in any study file.

Speed. Prompts are batched in order of their token length (the results come back in the given
order): a batch pads to its longest prompt, and on a CPU the prompt's forward pass (compute-bound)
dominates, so padding a 100-token prompt to 200 tokens costs as much as a second prompt.
Prompts of a batch usually start alike (the chat template's system turn, a format prefix, a task
instruction: 40-60% of a toolcall prompt); the shared tokens are run once and their KV cache
copied to every row (`share_prefix`), the rows' own tokens follow, left-padded after it (the
attention mask hides the padding; positions are counted from the mask, so each row's positions are
those of its unpadded prompt). The prompt pass computes the output layer at the last position
only; on a CPU it runs in groups of 4 rows of near-equal length (compute-bound there, so padding
tokens cost as much as real ones) and the rows' caches are stacked, left-padded, into preallocated buffers that
decoding writes into in place (`_Preallocated`; on a GPU the padded batch pass is faster and
transformers' own cache is used). Decoding runs under `torch.inference_mode` with the KV cache on, and a row that has finished
(eos, a stop string) leaves the batch at once (`_Decoder`): the others decode on without it.
Stop strings are checked by transformers' `StopStringCriteria` (vectorised over the batch, no
decoding per step). On a CPU a decode step costs far less per row in a large batch than alone
(the step is dominated by per-layer overhead and weight reads), so `batch_size` 16-32 is faster
than 8 when memory allows.

Sampling is seeded per batch (`seed + batch index`) inside a forked RNG, so the same prompts,
batch size and seed give the same texts, and the caller's RNG streams are left alone. A row's
text depends on its batch neighbours only through padding, which the attention mask hides (up to
floating-point rounding: a padded batch sums in another order, which can flip a near-tie of
greedy decoding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers.cache_utils import DynamicLayer

Prompt = str | Sequence[Mapping[str, str]]


def render(tokenizer, prompt: Prompt) -> tuple[str, bool]:
    """(prompt text, whether it came from the chat template)."""
    if isinstance(prompt, str):
        return prompt, False
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("chat messages were given but the tokenizer has no chat template; "
                         "give plain-text prompts for a base model")
    text = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return text, True


def generate(model, tokenizer, prompts: Sequence[Prompt], *, max_new_tokens: int = 64,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             stop: Sequence[str] = (), batch_size: int = 8,
             share_prefix: bool = True) -> list[str]:
    """The completion of each prompt (new text only, special tokens dropped, cut before the first
    stop string). `temperature` 0 is greedy; above 0 samples with `top_p`. `share_prefix`: run the
    tokens every prompt of a batch starts with once (see the module doc)."""
    stop = [s for s in stop if s]
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    texts = [render(tokenizer, p) for p in prompts]
    # the chat template already holds the special tokens; plain text gets the usual ones
    enc = [tokenizer(t, add_special_tokens=not chat)["input_ids"] for t, chat in texts]
    new = generate_ids(model, enc, eos=eos, pad=pad, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                       share_prefix=share_prefix, stop=stop, tokenizer=tokenizer)
    return [_cut(tokenizer.decode(row, skip_special_tokens=True), stop) for row in new]


def generate_ids(model, prompts: Sequence[Sequence[int]], *, eos: Sequence[int], pad: int,
                 max_new_tokens: int = 64, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                 share_prefix: bool = True, suppress: Sequence[int] = (),
                 stop_after: tuple[int, int] | None = None, stop: Sequence[str] = (),
                 tokenizer=None) -> list[list[int]]:
    """The new token ids of each prompt (token ids): the one decoding entry point every recipe
    uses (`generate` renders and tokenizes text prompts, then calls this). A row stops at an
    `eos` id, at a `stop` string (needs `tokenizer`), after `stop_after = (token, count)`: its
    `count`-th `token` (ilm: once every blank is answered), or at `max_new_tokens`. `suppress`:
    ids never generated. Sampling (`temperature` > 0) applies temperature, then `top_k` (0: off),
    then `top_p`, as transformers' `generate` does."""
    if (temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or max_new_tokens < 1
            or batch_size < 1):
        raise ValueError("generate: temperature >= 0, top_k >= 0, 0 < top_p <= 1, "
                         "max_new_tokens >= 1 and batch_size >= 1 are required")
    stop = [s for s in stop if s]
    if stop and tokenizer is None:
        raise ValueError("generate: stop strings need the tokenizer")
    device = next(model.parameters()).device
    enc = [list(p) for p in prompts]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))  # stable: ties keep their order
    out: list[list[int]] = [[] for _ in enc]
    was_training = model.training
    model.eval()
    decoder = _Decoder(model, tokenizer, eos=list(eos), max_new_tokens=max_new_tokens,
                       temperature=temperature, top_k=top_k, top_p=top_p, stop=stop,
                       suppress=suppress, stop_after=stop_after)
    try:
        for b, start in enumerate(range(0, len(order), batch_size)):
            part = order[start:start + batch_size]
            rows = [enc[i] for i in part]
            k = _shared(rows) if share_prefix and len(rows) > 1 else 0
            width = max(len(r) for r in rows)
            # left padding: every row's last prompt token at the same position (after the prefix)
            ids = torch.tensor([r[:k] + [pad] * (width - len(r)) + r[k:] for r in rows],
                               device=device)
            mask = torch.tensor([[1] * k + [0] * (width - len(r)) + [1] * (len(r) - k)
                                 for r in rows], device=device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                    torch.inference_mode():
                torch.manual_seed(seed + b)
                new = decoder(ids, mask, k)
            for i, row in zip(part, new):
                out[i] = row
    finally:
        model.train(was_training)
    return out


class _Decoder:
    """The decoding loop of one batch: greedy or sampled, the KV cache on, and rows that have
    finished (an eos token, a stop string, the limit) taken out of the batch.

    Written here rather than calling transformers' `model.generate`, which keeps every finished
    row in the batch (computing and discarding a token for it at every step) until the longest
    row stops: on a CPU a decode step costs about the same for 8 rows as for 4, but a batch whose
    longest answer is 64 tokens while most stop near 20 pays 64 full steps. What is kept from
    transformers: the sampling warpers (temperature, then top-p, as `generate` applies them),
    `StopStringCriteria` for stop strings, the cache's `batch_select_indices`, and its rules
    for positions (counted from the attention mask, padding at 0) and float32 logits. Greedy
    outputs equal `model.generate`'s (test_decoder_equals_transformers_generate)."""

    def __init__(self, model, tokenizer, *, eos: list[int], max_new_tokens: int,
                 temperature: float, top_p: float, stop: Sequence[str], top_k: int = 0,
                 suppress: Sequence[int] = (), stop_after: tuple[int, int] | None = None):
        import inspect

        from transformers.generation.logits_process import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.model, self.max_new_tokens = model, max_new_tokens
        self.eos = torch.tensor(eos)
        self.suppress = torch.tensor(sorted(set(suppress)), dtype=torch.long)
        self.stop_after = stop_after
        self.warpers = None
        if temperature > 0:
            self.warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)] + (
                [TopKLogitsWarper(top_k)] if top_k > 0 else []) + (
                [TopPLogitsWarper(top_p)] if top_p < 1 else []))
        self.stop = None
        if stop:
            from transformers.generation.stopping_criteria import StopStringCriteria

            self.stop = StopStringCriteria(tokenizer, list(stop))
        forward = inspect.signature(_base_forward(model)).parameters
        self.cache_name = "cache" if "cache" in forward else "past_key_values"  # transformers 5
        self.keep_last = "logits_to_keep" in forward

    def _forward(self, ids, mask, positions, cache, last_only: bool):
        extra = {"logits_to_keep": 1} if last_only and self.keep_last else {}
        if cache is not None:
            extra[self.cache_name] = cache
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         use_cache=True, **extra)
        return out.logits[:, -1, :].to(torch.float32), out[self.cache_name]

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, shared: int) -> list[list[int]]:
        n, device = ids.shape[0], ids.device
        positions = mask.long().cumsum(-1) - 1
        positions = positions.masked_fill(mask == 0, 0)
        cache = None
        if shared:              # the shared prefix once, its cache copied to every row
            _, cache = self._forward(ids[:1, :shared], mask[:1, :shared],
                                     positions[:1, :shared], None, True)
        unpadded = self._prefill_rows(ids, mask, shared, cache) if device.type == "cpu" else None
        if unpadded is not None:
            logits, cache, mask = unpadded
        else:
            if cache is not None:
                cache.batch_repeat_interleave(n)
            logits, cache = self._forward(ids[:, shared:], mask, positions[:, shared:], cache,
                                          True)
        nxt = mask.long().sum(-1)               # each row's next position: its own length
        rows = torch.arange(n, device=device)   # which original rows are still decoding
        seq = ids                               # the stop strings look at the tokens so far
        eos = self.eos.to(device)
        suppress = self.suppress.to(device)
        counted = torch.zeros(n, dtype=torch.long, device=device)  # stop_after's token so far
        new: list[list[int]] = [[] for _ in range(n)]
        for step in range(self.max_new_tokens):
            if len(suppress):  # as transformers' SuppressTokensLogitsProcessor: never chosen
                logits[:, suppress] = -float("inf")
            if self.warpers is not None:
                scores = self.warpers(seq, logits)
                token = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
            else:
                token = torch.argmax(logits, dim=-1)
            for r, t in zip(rows.tolist(), token.tolist()):
                new[r].append(t)
            if step == self.max_new_tokens - 1:
                break
            done = torch.isin(token, eos)
            if self.stop_after is not None:
                counted += token == self.stop_after[0]
                done |= counted >= self.stop_after[1]
            if self.stop is not None:
                seq = torch.cat([seq, token[:, None]], dim=1)
                done |= self.stop(seq, None).to(device)
            if done.all():
                break
            if done.any():                      # take the finished rows out of the batch
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, token, nxt, mask = rows[keep], token[keep], nxt[keep], mask[keep]
                counted = counted[keep]
                if self.stop is not None:
                    seq = seq[keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            logits, cache = self._forward(token[:, None], mask, nxt[:, None], cache, False)
            nxt = nxt + 1
        return new


    def _prefill_rows(self, ids, mask, shared: int, prefix):
        """The prompt pass in small groups of rows of near-equal length, on a CPU: there the pass
        is compute-bound, so a batch padded to its longest prompt pays for every padding token
        (16 toolcall prompts of 100-200 tokens: about half the tokens of a padded pass), while a
        group of `PREFILL_GROUP` neighbours in the length order pays for little padding. The
        rows' caches are then stacked without their padding, each left-padded with zeros that
        the attention mask hides. (logits, cache, mask), or None
        when the cache is not plain per-layer key/value tensors (a sliding-window or quantised
        cache): then the padded batch pass is used."""
        from transformers import DynamicCache

        if prefix is not None and not all(type(x) is DynamicLayer for x in prefix.layers):
            return None
        base = [(x.keys, x.values) for x in prefix.layers] if prefix is not None else None
        logits, rows = [], []
        own = [ids[r, shared:][mask[r, shared:].bool()] for r in range(ids.shape[0])]
        for start in range(0, len(own), PREFILL_GROUP):
            # a few rows of near-equal length together (the batch is sorted by length): the
            # matmuls run faster on 4 x 76 tokens than on 76 four times, and the padding is small
            group = own[start:start + PREFILL_GROUP]
            g, width = len(group), max(len(o) for o in group)
            x = torch.stack([torch.cat([o.new_zeros(width - len(o)), o]) for o in group])
            m = torch.stack([torch.cat([mask.new_ones(shared), mask.new_zeros(width - len(o)),
                                        mask.new_ones(len(o))]) for o in group])
            pos = (m.long().cumsum(-1) - 1).masked_fill(m == 0, 0)[:, shared:]
            cache = (DynamicCache(ddp_cache_data=[(k.expand(g, -1, -1, -1), v.expand(g, -1, -1, -1))
                                                  for k, v in base])
                     if base is not None else None)
            lg, c = self._forward(x, m, pos, cache, True)
            if not all(type(layer) is DynamicLayer for layer in c.layers):
                return None
            logits.append(lg)
            for i, o in enumerate(group):      # each row's prefix and own tokens, no padding
                keep = torch.cat([torch.arange(shared), torch.arange(shared + width - len(o),
                                                                     shared + width)])
                rows.append([(layer.keys[i:i + 1, :, keep], layer.values[i:i + 1, :, keep])
                             for layer in c.layers])
        width = max(r[0][0].shape[-2] for r in rows)
        layers = []
        for layer in range(len(rows[0])):
            k0, v0 = rows[0][layer]
            room = width + self.max_new_tokens
            keys = k0.new_zeros((len(rows), k0.shape[1], room, k0.shape[3]))
            values = v0.new_zeros((len(rows), v0.shape[1], room, v0.shape[3]))
            for i, r in enumerate(rows):
                k, v = r[layer]
                keys[i, :, width - k.shape[-2]:width] = k[0]
                values[i, :, width - v.shape[-2]:width] = v[0]
            layers.append(_Preallocated(keys, values, width))
        cache = DynamicCache()
        cache.layers = layers
        lengths = torch.tensor([r[0][0].shape[-2] for r in rows], device=ids.device)
        new_mask = (torch.arange(width, device=ids.device)[None] >= (width - lengths)[:, None])
        return torch.cat(logits), cache, new_mask.to(mask.dtype)


class _Preallocated(DynamicLayer):
    """A transformers cache layer whose key/value buffers are allocated once, with room for every
    new token: `DynamicLayer.update` concatenates the whole cache at every step (38% of a
    16-row CPU decode step in a profile), this writes the new positions in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, used: int):
        super().__init__()
        self._k, self._v, self.n = keys, values, used
        self.is_initialized, self.dtype, self.device = True, keys.dtype, keys.device
        self._view()

    def _view(self) -> None:
        self.keys, self.values = self._k[:, :, :self.n], self._v[:, :, :self.n]

    def update(self, key_states, value_states, *args, **kwargs):
        t = key_states.shape[-2]
        if self.n + t > self._k.shape[-2]:          # more tokens than planned: grow
            pad = (0, 0, 0, max(t, self._k.shape[-2]))
            self._k = torch.nn.functional.pad(self._k, pad)
            self._v = torch.nn.functional.pad(self._v, pad)
        self._k[:, :, self.n:self.n + t] = key_states
        self._v[:, :, self.n:self.n + t] = value_states
        self.n += t
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._view()


def _base_forward(model):
    """The forward function whose keywords matter (through a peft wrapper to the base model)."""
    return (model.get_base_model() if hasattr(model, "get_base_model") else model).forward


PREFILL_GROUP = 4
"""Rows run together in the CPU prompt pass (`_Decoder._prefill_rows`)."""

MIN_SHARED = 8
"""Fewer shared tokens than this are not worth a separate forward pass."""


def _shared(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all rows share, leaving every row at least one of its own (the
    last prompt token's logits start the generation); 0 when under MIN_SHARED."""
    k, limit = 0, min(len(r) for r in rows) - 1
    first = rows[0]
    while k < limit and all(r[k] == first[k] for r in rows):
        k += 1
    return k if k >= MIN_SHARED else 0


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), model.config):
        e = getattr(source, "eos_token_id", None) if source is not None else None
        ids += [e] if isinstance(e, int) else list(e or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise ValueError("generate: neither the model nor the tokenizer names an eos token")
    return ids


def _cut(text: str, stop: Sequence[str]) -> str:
    """The text before the first stop string (generation stops on the token that completes it,
    which may carry characters past it)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]
