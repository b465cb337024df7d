"""The model-side stages of the ilm recipe: train, evaluate, baseline.

    train     needs examples, tokenizer   params model, train   seeded, checkpoints, OOM back-off
    evaluate  needs train, testset         params eval           writes item_scores.parquet
    baseline  needs prepare, testset, tokenizer   params train_level   item scores, system "unigram"

Each stage function turns library errors (ValueError with the parameter or file named) into
StageError, so the user sees the message and no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fairtrial.recipes.api import Resources, Stage, StageError, oom_halve
from fairtrial.recipes.ilm.evaluate import METRICS, EvalParams
from fairtrial.recipes.ilm.model import ModelParams
from fairtrial.recipes.ilm.train import TrainParams

__all__ = ["MODEL_STAGES", "METRICS", "ModelParams", "TrainParams", "EvalParams",
           "train_stage", "evaluate_stage", "baseline_stage", "oom_policy"]

UNIGRAM_K = 1.0
"""Add-one (Laplace) smoothing for the unigram baseline."""


# ---------------------------------------------------------------------------------------------
# helpers


def _params(model_cls, ctx, key: str):
    try:
        return model_cls.model_validate(ctx.params.get(key) or {})
    except Exception as e:  # pydantic's ValidationError; the spec normally caught it already
        raise StageError(f"params.{key}: {e}") from None


def _tokenizer_dir(p: Path) -> Path:
    """The tokenizer artifact is the folder itself or holds it in tokenizer/."""
    p = Path(p)
    if not (p / "tokenizer_config.json").exists() and (p / "tokenizer").is_dir():
        return p / "tokenizer"
    return p


def _shards(folder: Path, what: str):
    from fairtrial.recipes.ilm.examples import ExampleShards

    try:
        return ExampleShards(folder)
    except (ValueError, OSError) as e:
        raise StageError(f"{what}: {e}") from None


def _input(ctx, name: str) -> Path:
    if name not in ctx.inputs:
        raise StageError(f"this stage needs the output of the {name} stage, which it was not given")
    return Path(ctx.inputs[name])


# ---------------------------------------------------------------------------------------------
# train


def oom_policy(params: dict[str, Any]) -> dict[str, Any] | None:
    """Halve train.micro_batch and double train.grad_accum (params are nested under `train`), so
    the effective batch and, by the loss normalisation in train.py, the gradients are unchanged."""
    defaults = TrainParams()
    train = {"micro_batch": defaults.micro_batch, "grad_accum": defaults.grad_accum,
             **(params.get("train") or {})}
    new = oom_halve("micro_batch", "grad_accum")(train)
    return None if new is None else {**params, "train": new}


def train_stage(ctx) -> dict[str, Any]:
    """Build the model, train it on examples/train (validating on examples/valid), save model/."""
    from fairtrial.recipes.ilm import model as M
    from fairtrial.recipes.ilm.tokenizer import special_ids
    from fairtrial.recipes.ilm.train import train

    mp = _params(ModelParams, ctx, "model")
    tp = _params(TrainParams, ctx, "train").resolved(pretrained=mp.pretrained is not None)
    seed = int(ctx.seed or 0)
    examples = _input(ctx, "examples")
    try:
        tok = M.load_tokenizer(_tokenizer_dir(_input(ctx, "tokenizer")))
        ids = special_ids(tok)
    except ValueError as e:
        raise StageError(str(e)) from None
    train_set = _shards(examples / "train", "examples/train")
    valid_set = _shards(examples / "valid", "examples/valid")
    if len(valid_set) == 0:
        raise StageError("examples/valid is empty: the train stage needs validation examples")

    try:
        shape = M.model_shape(mp, len(tok))
        n_params = shape["n_params"]
        # the widest micro-batch: the longest example (bucketed) or pad_to (padded), cut at the
        # model's positions
        seq = min(int(train_set.lengths().max()) if tp.batching == "bucketed" else tp.pad_to,
                  shape["n_positions"])
        act = M.activation_gb(shape["n_layer"], shape["n_embd"], tp.micro_batch, seq, len(tok))
        need_gb = M.check_memory(mp, n_params, ctx.device, act)
        model = M.build_model(mp, tok, seed=seed)
    except ValueError as e:
        raise StageError(str(e)) from None
    ctx.log.info("model: %.2fM parameters, about %.2f GB to train", n_params / 1e6, need_gb)

    resolved = {"model": mp.model_dump(), "train": tp.model_dump(), "seed": seed,
                "device": ctx.device, "vocab_size": len(tok), "n_params": n_params,
                "special_ids": ids, "n_train_examples": len(train_set),
                "n_valid_examples": len(valid_set)}
    try:
        result = train(model, train_set, valid_set, tp, ids=ids, seed=seed, device=ctx.device,
                       checkpoint_dir=Path(ctx.checkpoint_dir), resolved=resolved,
                       progress=ctx.progress, log=ctx.log, heartbeat=ctx.heartbeat)
    except ValueError as e:
        raise StageError(str(e)) from None

    resolved["selected_step"] = result["selected_step"]
    resolved["precision_used"] = result["precision"]
    M.save_model(model.cpu(), tok, Path(ctx.out) / "model", resolved)
    with open(Path(ctx.out) / "train_log.jsonl", "w", encoding="utf-8") as f:
        for row in result["history"]:
            f.write(json.dumps({"kind": "step", **row}) + "\n")
        for row in result["evals"]:
            f.write(json.dumps({"kind": "eval", **row}) + "\n")
    last = result["history"][-1] if result["history"] else {}
    return {"steps": result["steps"], "selected_step": result["selected_step"],
            "final_train_loss": last.get("loss"),
            "best_valid_infill_loss": result["best"].get("valid_infill_loss"),
            "n_params": n_params, "device": ctx.device, "precision": result["precision"],
            "useful_tokens_per_s": round(result["useful_tokens_per_s"], 1)}


# ---------------------------------------------------------------------------------------------
# evaluate


def evaluate_stage(ctx) -> dict[str, Any]:
    """Score the trained model on every test level; writes item_scores.parquet and summary.json."""
    from fairtrial.recipes.ilm import evaluate as E
    from fairtrial.recipes.ilm.infill import resolve_model_dir
    from fairtrial.recipes.ilm.model import load_model
    from fairtrial.recipes.ilm.tokenizer import special_ids
    from fairtrial.scores import write_item_scores

    ep = _params(EvalParams, ctx, "eval")
    try:
        model, tok = load_model(resolve_model_dir(_input(ctx, "train")), device=ctx.device)
        rows, summary = E.evaluate_model(model, _input(ctx, "testset"), special_ids(tok), ep,
                                         device=ctx.device, progress=ctx.progress, log=ctx.log)
        write_item_scores(Path(ctx.out), rows)
    except ValueError as e:
        raise StageError(str(e)) from None
    E.write_summary(ctx.out, summary)
    return {"levels": summary, "n_rows": len(rows)}


# ---------------------------------------------------------------------------------------------
# baseline


def _train_texts(prepare: Path, train_level: Any) -> list[str]:
    """Texts of the training split restricted to the arm's level(s), from the prepare artifact."""
    path = Path(prepare) / "train.jsonl"
    if not path.exists():
        raise ValueError(f"{path} does not exist: the prepare artifact should hold the training "
                         f"split as train.jsonl (rows with id, level, text)")
    levels = None if train_level in (None, "all") else (
        {str(train_level)} if isinstance(train_level, str) else {str(x) for x in train_level})
    texts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, level = row["text"], row.get("level")
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: expected a JSON object with id, level, text ({e})"
                                 ) from None
            if levels is None or str(level) in levels:
                texts.append(text)
    return texts


def baseline_stage(ctx) -> dict[str, Any]:
    """The unigram baseline: fit on the arm's training texts, score the test examples."""
    import numpy as np

    from fairtrial.recipes.ilm import evaluate as E
    from fairtrial.recipes.ilm.model import load_tokenizer
    from fairtrial.recipes.ilm.tokenizer import special_ids
    from fairtrial.recipes.ilm.unigram import fit_unigram, score_unigram
    from fairtrial.scores import write_item_scores

    train_level = ctx.params.get("train_level", "all")
    try:
        tok = load_tokenizer(_tokenizer_dir(_input(ctx, "tokenizer")))
        ids = special_ids(tok)
        texts = _train_texts(_input(ctx, "prepare"), train_level)
        if not texts:
            raise ValueError(f"train_level={train_level!r}: no training texts at that level")
        arrays = (np.asarray(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        logp = fit_unigram(arrays, len(tok), k=UNIGRAM_K, stop_id=ids["end_infill"])
        testset = _input(ctx, "testset")
        rows, summary = [], {}
        for lv in E.test_levels(testset):
            shards, item_ids, digest = E.open_testset(testset / lv)
            sums = score_unigram(logp, shards, ids)
            level_rows, _ = E.item_rows(item_ids, sums, eval_set=lv, digest=digest,
                                        system="unigram")
            rows += level_rows
            summary[lv] = E.summarise(sums)
            ctx.progress(len(summary), None, unit="level", message=f"level {lv}")
        write_item_scores(Path(ctx.out), rows)
    except ValueError as e:
        raise StageError(str(e)) from None
    np.save(Path(ctx.out) / "unigram_logp.npy", logp)
    E.write_summary(ctx.out, summary)
    return {"levels": summary, "n_train_texts": len(texts), "n_rows": len(rows)}


# ---------------------------------------------------------------------------------------------
# declarations

MODEL_STAGES = (
    Stage("train", train_stage, version="1", params=("model", "train"),
          needs=("examples", "tokenizer"), seeded=True, checkpoints=True, oom=oom_policy,
          resources=Resources(cpus=1, gpus=0, memory_gb=2)),
    Stage("evaluate", evaluate_stage, version="2", params=("eval",),
          needs=("train", "testset", "tokenizer"), emits_scores=True,
          resources=Resources(cpus=1, gpus=0, memory_gb=1)),
    Stage("baseline", baseline_stage, version="2", params=("train_level",),
          needs=("prepare", "testset", "tokenizer"), emits_scores=True,
          resources=Resources(cpus=1, gpus=0, memory_gb=1)),
)
