"""The toolcall recipe's stages, in the order they run.

Artifacts (each stage writes only under ctx.out):
  model/     model/ (a plain model folder: the named model converted once), model.json
  prepare/   items.jsonl (every track's train/valid/eval items), splits.json
  render/    gate.json (the format gate's report), examples.npz (training and valid token ids),
             eval.jsonl (id, track, chat messages of every evaluation item)
  train/     adapter/ (LoRA; absent for a prompt-only arm), train.json, train_log.jsonl
  generate/  outputs.jsonl (id, track, output, new tokens, seconds)
  score/     item_scores.parquet, summary.json (means, repair counts, error types per track)
  baseline/  item_scores.parquet of the trivial systems, summary.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fairtrial.base.jsonl import read_jsonl, write_jsonl
from fairtrial.recipes.api import StageError, stage_errors
from fairtrial.recipes.toolcall import params as P
from fairtrial.recipes.toolcall.data import read_items
from fairtrial.recipes.toolcall.evaluate import item_rows, summarise, trivial_answer
from fairtrial.scores import write_item_scores


def _model_dir(ctx) -> Path:
    return Path(ctx.inputs["model"]) / "model"


def model(ctx) -> dict[str, Any]:
    """Convert the named model once (a GGUF file de-quantised) into a plain model folder."""
    from fairtrial.ml.causal_lm.model import SOURCE_FILE, convert, load_tokenizer
    from fairtrial.ml.causal_lm.chat import assistant_header
    from fairtrial.recipes.toolcall.render import check_template

    mp = ctx.params.model
    ctx.progress(0, 1, "model", f"converting {mp.name}")
    with stage_errors("model.name"):
        folder = convert(mp.name, Path(ctx.out) / "model")
        tok = load_tokenizer(str(folder))
        check_template(tok, mp.name)
        assistant_header(tok)
    source = json.loads((Path(folder) / SOURCE_FILE).read_text())
    info = {"name": mp.name, "n_params": source.get("n_params"), "dtype": source.get("dtype")}
    (Path(ctx.out) / "model.json").write_text(json.dumps(info, indent=1))
    ctx.progress(1, 1, "model")
    return info


def prepare(ctx) -> dict[str, Any]:
    dp = ctx.params.data
    with stage_errors("data"):
        items, splits = read_items(dp)
    write_jsonl(Path(ctx.out) / "items.jsonl", items)
    (Path(ctx.out) / "splits.json").write_text(json.dumps(splits, indent=1))
    counts = {f"{t}_{p}": sum(1 for i in items if i["track"] == t and i["part"] == p)
              for t in dp.tracks() for p in ("train", "valid", "eval")}
    ctx.log.info("prepare: %s", counts)
    return counts


def render(ctx) -> dict[str, Any]:
    """The prompts as the model sees them, the training examples, and the format gate."""
    from fairtrial.ml.causal_lm.model import load_tokenizer
    from fairtrial.recipes.toolcall.render import format_gate, gate_message, messages

    pp = ctx.params.prompt
    items = read_jsonl(Path(ctx.inputs["prepare"]) / "items.jsonl")
    with stage_errors("render"):
        tok = load_tokenizer(str(_model_dir(ctx)))
        gate, train_ex, valid_ex = format_gate(tok, items, pp, pp.max_len)
    gate["allowed"] = pp.allow_format_mismatch
    if not gate["passed"] and not pp.allow_format_mismatch:
        raise StageError(gate_message(gate))
    if not gate["passed"]:
        ctx.log.warning("%s", gate_message(gate))
    (Path(ctx.out) / "gate.json").write_text(json.dumps(gate, indent=1))
    np.savez(Path(ctx.out) / "examples.npz",
             train=np.concatenate(train_ex), train_len=[len(e) for e in train_ex],
             valid=np.concatenate(valid_ex) if valid_ex else np.zeros(0, np.int64),
             valid_len=[len(e) for e in valid_ex], header=gate["header"], max_len=pp.max_len)
    write_jsonl(Path(ctx.out) / "eval.jsonl",
           ({"id": i["id"], "track": i["track"], "messages": messages(i, pp)}
            for i in items if i["part"] == "eval"))
    return {"gate_passed": gate["passed"], "n_train": gate["n_train"],
            "supervised_min": gate["supervised_tokens"]["min"],
            "supervised_median": gate["supervised_tokens"]["median"]}


def _examples(npz, key: str) -> list[np.ndarray]:
    flat, lens = npz[key], npz[key + "_len"]
    return np.split(flat, np.cumsum(lens)[:-1]) if len(lens) else []


def train(ctx) -> dict[str, Any]:
    """LoRA on the converted base (loss on completion tokens by default); a prompt-only arm
    (train.adapter = false) trains nothing."""
    tp = ctx.params.train
    mp = ctx.params.model
    out = Path(ctx.out)
    if not tp.adapter:
        (out / "train.json").write_text(json.dumps({"adapter": False}))
        return {"adapter": False}
    from fairtrial.ml.causal_lm.model import load_causal_lm
    from fairtrial.ml.causal_lm.sft import check_base, lora_sft

    npz = np.load(Path(ctx.inputs["render"]) / "examples.npz")
    with stage_errors("train"):
        base, tok = load_causal_lm(str(_model_dir(ctx)))
        quantized = check_base(base, f"model {mp.name}", "model.allow_quantized",
                               mp.allow_quantized)
        result = lora_sft(base, tok, list(npz["header"]), _examples(npz, "train"),
                          _examples(npz, "valid"), tp, seed=int(ctx.seed or 0),
                          max_len=int(npz["max_len"]), out=out, device=ctx.device,
                          checkpoint_dir=Path(ctx.checkpoint_dir),
                          config={"train": tp.model_dump(), "model": mp.model_dump()},
                          progress=ctx.progress, log=ctx.log, heartbeat=ctx.heartbeat)
    info = {"adapter": True, **result, "quantized_base": quantized}
    (out / "train.json").write_text(json.dumps(info, indent=1))
    return info


def generate(ctx) -> dict[str, Any]:
    """Batched decoding of every evaluation item; output, new-token count and seconds per item."""
    from fairtrial.ml.causal_lm.generate import generate as gen
    from fairtrial.ml.causal_lm.lora import load_adapter
    from fairtrial.ml.causal_lm.model import load_causal_lm

    gp = ctx.params.generate
    evals = read_jsonl(Path(ctx.inputs["render"]) / "eval.jsonl")
    adapter = Path(ctx.inputs["train"]) / "adapter"
    with stage_errors("generate"):
        model, tok = load_causal_lm(str(_model_dir(ctx)), device=ctx.device)
        if adapter.is_dir():
            model = load_adapter(model, adapter)
    rows = []
    # several batches per call: generate batches prompts of similar length together (less
    # padding); `seconds` is the per-item mean of the call
    chunk = 4 * gp.batch_size
    for start in range(0, len(evals), chunk):
        part = evals[start:start + chunk]
        t0 = time.perf_counter()
        texts = gen(model, tok, [e["messages"] for e in part], max_new_tokens=gp.max_new_tokens,
                    temperature=gp.temperature, top_p=gp.top_p, seed=int(ctx.seed or 0) + start,
                    stop=gp.stop, batch_size=gp.batch_size)
        dt = (time.perf_counter() - t0) / len(part)
        for e, t in zip(part, texts):
            rows.append({"id": e["id"], "track": e["track"], "output": t,
                         "new_tokens": len(tok(t, add_special_tokens=False)["input_ids"]),
                         "seconds": round(dt, 4)})
        ctx.progress(len(rows), len(evals), "items")
    write_jsonl(Path(ctx.out) / "outputs.jsonl", rows)
    secs = sum(r["seconds"] for r in rows)
    return {"items": len(rows), "items_per_s": round(len(rows) / secs, 3) if secs else None}


def score(ctx) -> dict[str, Any]:
    """Every output scored under the strict and the tolerant parser of its track."""
    items = read_jsonl(Path(ctx.inputs["prepare"]) / "items.jsonl")
    outputs = read_jsonl(Path(ctx.inputs["generate"]) / "outputs.jsonl")
    rows = item_rows(items, {o["id"]: o["output"] for o in outputs})
    with stage_errors("score"):
        write_item_scores(Path(ctx.out), rows)
    summary = summarise(rows)
    (Path(ctx.out) / "summary.json").write_text(json.dumps(summary, indent=1))
    return {t: {k: round(v, 4) for k, v in s["means"].items() if k in ("args_f1", "field_f1")}
            for t, s in summary.get("model", {}).items()}


def baseline(ctx) -> dict[str, Any]:
    """The trivial systems of each track, scored on the same items by the same scorer."""
    items = read_jsonl(Path(ctx.inputs["prepare"]) / "items.jsonl")
    rows = []
    for track in sorted({i["track"] for i in items}):
        answers, system = {}, None
        for it in items:
            if it["part"] == "eval" and it["track"] == track:
                system, answers[it["id"]] = trivial_answer(it)
        rows += item_rows([i for i in items if i["track"] == track], answers, system=system)
    with stage_errors("baseline"):
        write_item_scores(Path(ctx.out), rows)
    summary = summarise(rows)
    (Path(ctx.out) / "summary.json").write_text(json.dumps(summary, indent=1))
    return {s: {t: round(v["means"].get("args_f1" if t == "toolcall" else "field_f1", 0), 4)
                for t, v in tracks.items()} for s, tracks in summary.items()}
