"""Generation speed of the toolcall recipe: batched greedy decoding (the generate stage's call of
`fairtrial.ml.causal_lm.generate.generate`) against one-at-a-time `generate` on the same items,
with the same outputs checked item by item, and against transformers' `model.generate` one at a
time and batched (the same batches, left-padded): the custom decoder stays only while it wins.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_toolcall_speed.py [--items 24] [--batch 8]
        [--max-new-tokens 64] [--model smollm2-135m] [--json] [--batched-only]

Prints items/s of both, the speed-up, the machine's load average before and after (other
processes share the 2 cores; a loaded machine slows both runs, and the batched one more, since
its long padded prompt passes need the cores the longest), and every item whose output differs,
with both texts and the reason: at the first token where they part, the single run's logit gap
between its choice and the batched run's choice (a gap near 0 is a near-tie that the other
summation order of a padded batch can flip). The issue asks for a speed-up of at least 4x.

`--trl`: instead, LoRA training speed, our loop (`fairtrial.ml.causal_lm.train.train`, as the
toolcall train stage calls it) against TRL's `SFTTrainer` (ref), on the same model, the same
pre-tokenised examples (the recipe's own rendering: prompt + completion + end of turn, loss on the
completion only), the same LoRA config (one `add_lora` call each: r=8, alpha 16, dropout 0.05 on
q,k,v,o), the same batch, steps (one pass over the examples, so both see the same tokens), constant
learning rate, fp32 on the CPU. Prints useful (non-padding) tokens per second of each, timed over
the training call only (model load and data preparation outside); ours runs before and after
TRL so a change of the machine's load shows. Needs `trl` (and `datasets`), benchmark only:

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_toolcall_speed.py --trl [--examples 16]
        [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

SLM = Path(__file__).resolve().parents[2] / "shared" / "data" / "slm-swap" / "toolcall"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", type=Path, default=SLM)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--trl", action="store_true", help="LoRA training: ours against TRL")
    ap.add_argument("--batched-only", action="store_true",
                    help="ours batched against transformers' batched generate only, after a "
                         "warm-up of each, alternating three times so a change of load shows")
    ap.add_argument("--examples", type=int, default=16, help="--trl: training examples")
    a = ap.parse_args()
    if a.trl:
        return trl_comparison(a)

    import torch

    from fairtrial.ml.causal_lm.generate import generate
    from fairtrial.ml.causal_lm.model import load_causal_lm
    from fairtrial.recipes.toolcall.params import PromptParams
    from fairtrial.recipes.toolcall.render import messages

    rows = [json.loads(x) for x in (a.data / "test.jsonl").read_text().splitlines()][:a.items]
    prompts = [messages({"prompt": r["prompt"], "system": ""}, PromptParams()) for r in rows]
    t0 = time.perf_counter()
    model, tok = load_causal_lm(a.model)
    load_s = time.perf_counter() - t0
    kw = {"max_new_tokens": a.max_new_tokens, "temperature": 0.0}
    if a.batched_only:
        return batched_only(a, model, tok, prompts, kw)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    batched = generate(model, tok, prompts, batch_size=a.batch, **kw)
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [generate(model, tok, [p], batch_size=1, **kw)[0] for p in prompts]
    single_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hf = [hf_generate(model, tok, p, a.max_new_tokens) for p in prompts]
    hf_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hf_b = hf_generate_batched(model, tok, prompts, a.max_new_tokens, a.batch)
    hf_b_s = time.perf_counter() - t0
    load_after = os.getloadavg()
    differ = [{"item": i, "batched": b, "single": s, "reason": reason(model, tok, prompts[i], b, s)}
              for i, (b, s) in enumerate(zip(batched, single)) if b != s]
    out = {"model": a.model, "items": len(prompts), "batch": a.batch,
           "max_new_tokens": a.max_new_tokens, "threads": torch.get_num_threads(),
           "load_s": round(load_s, 1),
           "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
           "batched_items_per_s": round(len(prompts) / batched_s, 3),
           "single_items_per_s": round(len(prompts) / single_s, 3),
           "speedup": round(single_s / batched_s, 2),
           "hf_single_items_per_s": round(len(prompts) / hf_s, 3),
           "speedup_vs_hf_single": round(hf_s / batched_s, 2),
           "differ_from_hf": sum(b != h for b, h in zip(batched, hf)),
           "hf_batched_items_per_s": round(len(prompts) / hf_b_s, 3),
           "speedup_vs_hf_batched": round(hf_b_s / batched_s, 2),
           "differ_from_hf_batched": sum(b != h for b, h in zip(batched, hf_b)),
           "new_tokens_single": [len(tok(t, add_special_tokens=False)["input_ids"])
                                 for t in single],
           "differ": differ}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{a.model}: {len(prompts)} items, greedy, {a.max_new_tokens} new tokens, "
          f"{out['threads']} threads, load average (1 min) {out['loadavg_1min_before_after'][0]}"
          f" before, {out['loadavg_1min_before_after'][1]} after")
    print(f"  batched (batch {a.batch}): {out['batched_items_per_s']} items/s")
    print(f"  one at a time (reference): {out['single_items_per_s']} items/s")
    n = out["new_tokens_single"]
    print(f"  speed-up {out['speedup']}x; outputs that differ: {len(differ)}")
    print(f"  transformers' model.generate one at a time (ref 2): {out['hf_single_items_per_s']}"
          f" items/s; speed-up {out['speedup_vs_hf_single']}x; outputs that differ: "
          f"{out['differ_from_hf']}")
    print(f"  transformers' model.generate batched (batch {a.batch}, left padding; ref 3): "
          f"{out['hf_batched_items_per_s']} items/s; speed-up {out['speedup_vs_hf_batched']}x; "
          f"outputs that differ: {out['differ_from_hf_batched']}")
    print(f"  new tokens per item: mean {sum(n) / len(n):.1f}, max {max(n)}, "
          f"{sum(1 for x in n if x >= a.max_new_tokens)} of {len(n)} at the limit (a batch "
          "decodes until its longest row stops)")
    for d in differ:
        print(f"  item {d['item']}: {d['reason']}\n    batched {d['batched']!r}\n"
              f"    single  {d['single']!r}")


def trl_comparison(a) -> None:
    import tempfile

    import numpy as np
    import torch

    from fairtrial.ml.causal_lm.lora import LoraSpec, add_lora
    from fairtrial.ml.causal_lm.model import load_causal_lm
    from fairtrial.ml.causal_lm.params import LoopParams
    from fairtrial.ml.causal_lm.tokens import Objective
    from fairtrial.ml.causal_lm.train import train
    from fairtrial.recipes.toolcall.params import PromptParams
    from fairtrial.recipes.toolcall.render import (
        COMPLETION,
        assistant_header,
        example,
        kinds_fn,
        prompt_text,
    )

    rows = [json.loads(x) for x in (a.data / "train.jsonl").read_text().splitlines()]
    rows = rows[:a.examples]
    base, tok = load_causal_lm(a.model)
    examples = [example(tok, prompt_text(tok, {"prompt": r["prompt"], "system": ""},
                                         PromptParams()), r["completion"]) for r in rows]
    ids = [e for e, _ in examples]
    tokens = int(sum(len(e) for e in ids))
    steps = len(ids) // a.batch
    spec = LoraSpec(r=8, alpha=16, dropout=0.05)
    state = {k: v.clone() for k, v in base.state_dict().items()}

    def fresh():
        base.load_state_dict(state)
        return add_lora(base, spec, seed=0)

    def ours() -> float:
        model = fresh()
        weights = [0.0, 0.0, 0.0]
        weights[COMPLETION] = 1.0
        obj = Objective(pad_id=tok.pad_token_id, kinds=kinds_fn(assistant_header(tok)),
                        weights=weights, report={})
        p = LoopParams(steps=steps, micro_batch=a.batch, lr=1e-4, weight_decay=0.0,
                       schedule="constant", warmup_frac=0.0, precision="fp32", eval_every=0,
                       checkpoint_every=10**6, select="last")
        t0 = time.perf_counter()
        r = train(model, ids, ids[:1], p, obj, seed=0, max_len=2048)
        dt = time.perf_counter() - t0
        model.unload()  # peft: the base without the adapter, for the next run
        assert r["useful_tokens"] == tokens, (r["useful_tokens"], tokens)
        return dt

    def theirs() -> float:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        model = fresh()
        data = Dataset.from_list([{"input_ids": e.tolist(),
                                   "completion_mask": [0] * n + [1] * (len(e) - n)}
                                  for e, n in examples])
        with tempfile.TemporaryDirectory() as out:
            cfg = SFTConfig(output_dir=out, per_device_train_batch_size=a.batch,
                            gradient_accumulation_steps=1, max_steps=steps, learning_rate=1e-4,
                            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                            max_length=2048, completion_only_loss=True, use_cpu=True,
                            report_to="none", save_strategy="no", logging_steps=1,
                            dataloader_num_workers=0, seed=0, bf16=False, fp16=False)
            trainer = SFTTrainer(model=model, args=cfg, train_dataset=data,
                                 processing_class=tok)
            t0 = time.perf_counter()
            trainer.train()
            dt = time.perf_counter() - t0
        model.unload()
        return dt

    load0 = os.getloadavg()[0]
    t_ours = ours()
    t_trl = theirs()
    t_ours2 = ours()
    load1 = os.getloadavg()[0]
    out = {"model": a.model, "examples": len(ids), "batch": a.batch, "steps": steps,
           "useful_tokens": tokens, "threads": torch.get_num_threads(),
           "loadavg_1min_before_after": [round(load0, 2), round(load1, 2)],
           "ours_tokens_per_s": [round(tokens / t_ours, 1), round(tokens / t_ours2, 1)],
           "trl_tokens_per_s": round(tokens / t_trl, 1),
           "ratio_ours_over_trl": round(t_trl / statistics_mean([t_ours, t_ours2]), 2),
           "median_example_tokens": int(np.median([len(e) for e in ids]))}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{a.model}: LoRA r=8 q,k,v,o, {len(ids)} examples (median {out['median_example_tokens']}"
          f" tokens), batch {a.batch}, {steps} steps, fp32, {out['threads']} threads, load "
          f"average {load0:.2f} before, {load1:.2f} after")
    print(f"  ours (fairtrial.ml.causal_lm.train): {out['ours_tokens_per_s'][0]} then "
          f"{out['ours_tokens_per_s'][1]} useful tokens/s")
    print(f"  TRL SFTTrainer (reference):          {out['trl_tokens_per_s']} useful tokens/s")
    print(f"  ours / TRL: {out['ratio_ours_over_trl']}x")


def hf_generate(model, tok, prompt, max_new_tokens: int) -> str:
    """transformers' own `model.generate` on one prompt (greedy, the same eos ids): the second
    reference, the one-at-a-time loop a user would write without fairtrial."""
    import torch
    from transformers import GenerationConfig

    from fairtrial.ml.causal_lm import generate as G

    text, chat = G.render(tok, prompt)
    ids = torch.tensor([tok(text, add_special_tokens=not chat)["input_ids"]])
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False,
                              eos_token_id=G._eos_ids(model, tok), pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             generation_config=config)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def batched_only(a, model, tok, prompts, kw) -> None:
    from fairtrial.ml.causal_lm.generate import generate

    # a warm-up of each first (the first call of a process pays one-off costs: kernel selection,
    # allocator growth), then three alternating rounds
    generate(model, tok, prompts[:a.batch], batch_size=a.batch, **kw)
    hf_generate_batched(model, tok, prompts[:a.batch], a.max_new_tokens, a.batch)
    rows = []
    for round_ in (1, 2, 3):
        for who in ("ours", "transformers"):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            out = (generate(model, tok, prompts, batch_size=a.batch, **kw) if who == "ours" else
                   hf_generate_batched(model, tok, prompts, a.max_new_tokens, a.batch))
            s = time.perf_counter() - t0
            rows.append({"round": round_, "who": who, "items_per_s": round(len(prompts) / s, 3),
                         "seconds": round(s, 1), "loadavg_1min": round(load, 2), "out": out})
    ours = [r for r in rows if r["who"] == "ours"]
    theirs = [r for r in rows if r["who"] == "transformers"]
    ratio = [round(t["seconds"] / o["seconds"], 2) for o, t in zip(ours, theirs)]
    differ = sum(x != y for x, y in zip(ours[0]["out"], theirs[0]["out"]))
    result = {"model": a.model, "items": len(prompts), "batch": a.batch,
              "max_new_tokens": a.max_new_tokens,
              "runs": [{k: v for k, v in r.items() if k != "out"} for r in rows],
              "speedup_vs_hf_batched_per_round": ratio, "outputs_that_differ": differ}
    if a.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{a.model}: {len(prompts)} items, batch {a.batch}, greedy, {a.max_new_tokens} new tokens")
    for r in result["runs"]:
        print(f"  round {r['round']} {r['who']:>12}: {r['items_per_s']} items/s "
              f"({r['seconds']} s, load average {r['loadavg_1min']})")
    print(f"  ours vs transformers' batched generate (ref), per round: {ratio}x; outputs that "
          f"differ: {differ}")


def hf_generate_batched(model, tok, prompts, max_new_tokens: int, batch: int) -> list[str]:
    """transformers' own `model.generate` on batches of `batch` prompts in the same length order
    as ours, left-padded (greedy, the same eos ids): the reference our decoder must beat to be
    kept (issue 23: the custom decoder only where a benchmark shows it wins)."""
    import torch
    from transformers import GenerationConfig

    from fairtrial.ml.causal_lm import generate as G

    rendered = [G.render(tok, p) for p in prompts]
    enc = [tok(t, add_special_tokens=not chat)["input_ids"] for t, chat in rendered]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False,
                              eos_token_id=G._eos_ids(model, tok), pad_token_id=tok.pad_token_id)
    out = [""] * len(enc)
    for start in range(0, len(order), batch):
        part = order[start:start + batch]
        width = max(len(enc[i]) for i in part)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(enc[i])) + enc[i] for i in part])
        mask = torch.tensor([[0] * (width - len(enc[i])) + [1] * len(enc[i]) for i in part])
        with torch.inference_mode():
            got = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        for i, row in zip(part, got[:, width:]):
            out[i] = tok.decode(row, skip_special_tokens=True)
    return out


def statistics_mean(xs) -> float:
    return sum(xs) / len(xs)


def reason(model, tok, prompt, batched: str, single: str) -> str:
    """Why two greedy outputs differ: the logit gap, in the unpadded single run, between the two
    tokens chosen where the outputs part (texts re-tokenised, so approximate at the boundary)."""
    import torch

    from fairtrial.ml.causal_lm.generate import render

    text, chat = render(tok, prompt)
    ids = tok(text, add_special_tokens=not chat)["input_ids"]
    b = tok(batched, add_special_tokens=False)["input_ids"]
    s = tok(single, add_special_tokens=False)["input_ids"]
    k = next((i for i, (x, y) in enumerate(zip(b, s)) if x != y), min(len(b), len(s)))
    if k >= min(len(b), len(s)):
        return f"one output is a prefix of the other (they part after {k} tokens: a stop or eos)"
    with torch.inference_mode():
        logits = model(torch.tensor([ids + s[:k]])).logits[0, -1].float()
    gap = float(logits[s[k]] - logits[b[k]])
    kind = "a near-tie" if abs(gap) < 0.05 else "NOT a near-tie (look closer)"
    return (f"part at new token {k}: {tok.decode([s[k]])!r} (single) vs {tok.decode([b[k]])!r} "
            f"(batched), logit gap {gap:.4f}: {kind}")


if __name__ == "__main__":
    main()
