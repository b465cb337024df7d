"""The curate recipe's part 2 stage functions, in the order they run: teacher -> train -> merge ->
quantize -> reference -> evaluate. Each reads its params, calls the blocks (curate.teacher, curate.gsm8k,
curate.sampling, curate.judge; the ML layer's lora, train, merge_check, quantize, generate) and
writes under ctx.out.

Artifacts:
  teacher/   train.parquet (id, prompt, response, responder), teacher.json
  train/     adapter/ (LoRA), train.json, train_log.jsonl
  merge/     model/ (the merged full-precision student), merge_check.json
  quantize/  model_int8.pt (when enabled), quantize.json
  reference/ reference.jsonl (the teacher's answers to the judged items, judge.against =
             "teacher"), reference.json
  evaluate/  item_scores.parquet, outputs.jsonl, summary.json (accuracy, maj@k, consistency,
             the judged comparison with its counts, rates and intervals, integrity findings)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fairtrial.base.jsonl import write_jsonl
from fairtrial.errors import UserError
from fairtrial.recipes.api import StageError, stage_errors
from fairtrial.recipes.curate import gsm8k, sampling
from fairtrial.recipes.curate import judge as judge_lib
from fairtrial.recipes.curate import teacher as teacher_lib
from fairtrial.recipes.curate.collect import read_source
from fairtrial.recipes.curate.params import EndpointParams, SourceParams
from fairtrial.scores import eval_set_digest, write_item_scores

ANSWERS = "answers.jsonl"
"""The teacher's answers, appended per batch in the stage's checkpoint folder (a killed stage
re-asks only the items it has no answer for)."""


def _spec(e: EndpointParams):
    from fairtrial.ml.endpoint import EndpointSpec

    return EndpointSpec(**e.model_dump())


def _user(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": prompt}]


def _skipped(ctx) -> dict | None:
    """params.distill = false (a part-1 study): the stage records that it was skipped."""
    if ctx.params.distill:
        return None
    info = {"skipped": "params.distill = false: curation only"}
    (Path(ctx.out) / "skipped.json").write_text(json.dumps(info))
    return info


# ----------------------------------------------------------------------------- 6. teacher

def teacher(ctx) -> dict:
    """The arm's training set (select's `train_set`); with a teacher, its responses replace the
    data set's, asked per item and cached (resumable)."""
    if (skipped := _skipped(ctx)) is not None:
        return skipped
    p = ctx.params
    f = Path(ctx.inputs["select"]) / "arms" / f"{p.train_set}.parquet"
    if not f.exists():
        raise StageError(f"train_set = {p.train_set!r} was not selected; add it to "
                         f"params.select.arms")
    t = pq.read_table(f, columns=["id", "prompt", "response", "system"])
    ids, prompts, systems = t["id"].to_pylist(), t["prompt"].to_pylist(), t["system"].to_pylist()
    responses, responder = t["response"].to_pylist(), "dataset"
    tp = p.teacher
    if tp.name:
        items = [(i, _user(pr, s)) for i, pr, s in zip(ids, prompts, systems)]
        answers = Path(ctx.checkpoint_dir) / ANSWERS
        prog = lambda d, n: ctx.progress(d, n, "item")
        with stage_errors("teacher", catch=(ValueError, OSError, UserError)):
            if tp.endpoint is not None:
                got = teacher_lib.teach_endpoint(_spec(tp.endpoint), items, answers, progress=prog,
                                                 max_tokens=tp.max_new_tokens,
                                                 temperature=tp.temperature, seed=tp.seed)
            else:
                from fairtrial.ml.causal_lm.model import load_causal_lm

                model, tok = load_causal_lm(tp.model, device=ctx.device)
                got = teacher_lib.teach_local(model, tok, items, answers, model_name=tp.model,
                                              batch_size=tp.batch_size,
                                              max_new_tokens=tp.max_new_tokens,
                                              temperature=tp.temperature, seed=tp.seed,
                                              progress=prog)
        responses, responder = [got[str(i)]["text"] for i in ids], tp.name
    pq.write_table(pa.table({"id": ids, "prompt": prompts, "system": systems,
                             "response": responses, "responder": [responder] * len(ids)}),
                   ctx.out / "train.parquet")
    info = {"train_set": p.train_set, "items": len(ids), "responder": responder,
            "empty_responses": sum(1 for r in responses if not r.strip())}
    (ctx.out / "teacher.json").write_text(json.dumps(info, indent=1))
    return info


# ----------------------------------------------------------------------------- 7. train

def _check_student(model, p) -> bool:
    from fairtrial.ml.causal_lm.sft import check_base

    return check_base(model, f"student {p.student.name}", "student.allow_quantized",
                      p.student.allow_quantized)


def train(ctx) -> dict[str, Any]:
    """LoRA on the full-precision student, loss on the response tokens (completion-only by
    default), exact resume from ctx.checkpoint_dir."""
    if (skipped := _skipped(ctx)) is not None:
        return skipped
    # the chat example and the LoRA fine-tune: the ML layer's blocks, the same the toolcall
    # recipe trains with
    from fairtrial.ml.causal_lm.chat import assistant_header, example
    from fairtrial.ml.causal_lm.generate import render
    from fairtrial.ml.causal_lm.model import load_causal_lm
    from fairtrial.ml.causal_lm.sft import lora_sft

    p = ctx.params
    tp, seed, out = p.train, int(ctx.seed or 0), Path(ctx.out)
    t = pq.read_table(Path(ctx.inputs["teacher"]) / "train.parquet").to_pylist()
    with stage_errors(f"student.name {p.student.name!r}"):
        base, tok = load_causal_lm(p.student.name)
        if getattr(tok, "chat_template", None) is None:
            raise StageError(f"student {p.student.name}: its tokenizer has no chat template; use "
                             "an instruct model")
        header = assistant_header(tok)
    with stage_errors("train"):
        quantized = _check_student(base, p)
    examples = [example(tok, render(tok, _user(r["prompt"], r["system"]))[0], r["response"])[0]
                for r in t]
    n_valid = round(tp.valid_share * len(examples))
    order = np.random.default_rng(seed).permutation(len(examples)) if n_valid else None
    valid = [examples[k] for k in order[:n_valid]] if n_valid else []
    train_ex = [examples[k] for k in order[n_valid:]] if n_valid else examples
    with stage_errors("train"):
        result = lora_sft(base, tok, header, train_ex, valid, tp, seed=seed, max_len=tp.max_len,
                          out=out, device=ctx.device, checkpoint_dir=Path(ctx.checkpoint_dir),
                          config={"train": tp.model_dump(), "student": p.student.model_dump()},
                          progress=ctx.progress, log=ctx.log, heartbeat=ctx.heartbeat)
    info = {"examples": len(train_ex), "valid": len(valid), **result, "quantized_base": quantized}
    (out / "train.json").write_text(json.dumps(info, indent=1))
    return info


# ----------------------------------------------------------------------------- 8. merge

def merge(ctx) -> dict[str, Any]:
    """Merge the adapter into the full-precision student and check the merge on held-out prompts
    (the declared evaluation sets' questions): a failed check fails the stage unless allowed."""
    if (skipped := _skipped(ctx)) is not None:
        return skipped
    from fairtrial.ml.causal_lm.lora import load_adapter
    from fairtrial.ml.causal_lm.merge_check import merge_and_check
    from fairtrial.ml.causal_lm.model import load_causal_lm, save_model

    p = ctx.params
    mp = p.merge
    ev = pq.read_table(Path(ctx.inputs["collect"]) / "eval.parquet", columns=["prompt"])
    prompts = [_user(q) for q in ev["prompt"].to_pylist()[:mp.prompts]]
    if len(prompts) < mp.min_prompts:
        raise StageError(f"merge check: {len(prompts)} held-out prompts (params.eval_sets) for "
                         f"merge.min_prompts = {mp.min_prompts}; declare a larger evaluation set")
    with stage_errors(f"student.name {p.student.name!r}"):
        base, tok = load_causal_lm(p.student.name)
    with stage_errors("merge"):
        _check_student(base, p)
    with stage_errors("merge"):
        peft_model = load_adapter(base, Path(ctx.inputs["train"]) / "adapter")
        merged, check = merge_and_check(
            peft_model, tok, prompts, min_top1_agreement=mp.min_top1_agreement,
            max_mean_kl=mp.max_mean_kl, max_relative_kl=mp.max_relative_kl,
            force=mp.force_quantized, min_prompts=mp.min_prompts)
    info = {**check.to_dict(), "message": check.message, "allowed": mp.allow_failed_check}
    (ctx.out / "merge_check.json").write_text(json.dumps(info, indent=1))
    if not check.passed and not mp.allow_failed_check:
        raise StageError(check.message + " (set merge.allow_failed_check = true to report it "
                                         "instead)")
    if not check.passed:
        ctx.log.warning("%s", check.message)
    save_model(merged, tok, ctx.out / "model", extra={"merge_check": check.to_dict()})
    return {"passed": check.passed, "top1_agreement": round(check.top1_agreement, 4),
            "mean_kl": check.mean_kl, "forced": check.forced}


# ----------------------------------------------------------------------------- 9. quantize

def quantize(ctx) -> dict[str, Any]:
    """Optional: an int8 dynamic-quantised copy of the merged model, its size on disk."""
    if (skipped := _skipped(ctx)) is not None:
        return skipped
    from fairtrial.ml.causal_lm.quantize import size_on_disk

    p = ctx.params
    float_dir = Path(ctx.inputs["merge"]) / "model"
    info: dict[str, Any] = {"enabled": p.quantize.enabled,
                            "float_bytes": size_on_disk(float_dir)}
    if p.quantize.enabled:
        from fairtrial.ml.causal_lm.model import load_causal_lm
        from fairtrial.ml.causal_lm.quantize import quantize_int8, save_quantized

        with stage_errors("quantize"):
            model, _ = load_causal_lm(str(float_dir))
            info["int8_bytes"] = save_quantized(quantize_int8(model), ctx.out)
    (ctx.out / "quantize.json").write_text(json.dumps(info, indent=1))
    return info


# ----------------------------------------------------------------------------- 10. evaluate

def _items(path: str, limit: int | None, what: str) -> list:
    with stage_errors(what):
        return read_source(SourceParams(name="gsm8k", path=path, format="gsm8k", limit=limit),
                           "raise").rows


def _judge(jp, device: str):
    if jp.kind == "reference":
        from fairtrial.ml.embed import load_encoder

        return judge_lib.ReferenceJudge(load_encoder(jp.encoder, device=device), margin=jp.margin,
                                        name=jp.judge_name)
    template = jp.prompt or judge_lib.PAIRWISE_PROMPT
    if jp.endpoint is not None:
        from fairtrial.ml.endpoint import ChatClient

        client = ChatClient(_spec(jp.endpoint))
        errors: list[str] = []
        judge = judge_lib.LLMJudge(judge_lib.endpoint_complete(
            client, max_concurrency=jp.endpoint.max_concurrency, errors=errors, temperature=0.0,
            max_tokens=jp.max_new_tokens), name=jp.judge_name, template=template)
        judge.errors = errors       # one list: failed requests and unreadable verdicts
        return judge
    from fairtrial.ml.causal_lm.model import load_causal_lm

    model, tok = load_causal_lm(jp.model, device=device)
    return judge_lib.LLMJudge(judge_lib.local_complete(model, tok, max_new_tokens=jp.max_new_tokens),
                              name=jp.judge_name, template=template)


def _eval_set(p) -> tuple[list, list[str], list[list[dict[str, str]]]]:
    """The evaluation items, their reference answers, and the chat messages every contestant
    (student or teacher) is asked with."""
    ep = p.evaluate
    items = _items(ep.path, ep.items, "evaluate.path")
    if not items:
        raise StageError(f"evaluate.path {ep.path}: no items")
    refs = [gsm8k.reference_answer(r.response, where=f"{r.file}: line {r.line}") for r in items]
    shots_pool = ([{"question": r.prompt, "answer": r.response}
                   for r in _items(ep.shots_path, None, "evaluate.shots_path")]
                  if ep.shots else [])
    instruction = ep.instruction if ep.instruction is not None else gsm8k.DEFAULT_INSTRUCTION
    msgs = [gsm8k.prompt_messages(
        r.prompt, gsm8k.few_shot(shots_pool, ep.shots, seed=ep.seed + n, exclude=r.prompt)
        if ep.shots else (), instruction=instruction) for n, r in enumerate(items)]
    return items, refs, msgs


REFERENCE = "reference.jsonl"


def reference(ctx) -> dict[str, Any]:
    """The reference system's answers to the judged evaluation items: with judge.against =
    "teacher", the teacher's (asked with the students' own prompts, cached per item, resumable;
    one run serves every arm and seed); with "dataset", nothing to do (the data set's solutions
    are read by evaluate)."""
    if (skipped := _skipped(ctx)) is not None:
        return skipped
    p = ctx.params
    jp, tp = p.judge, p.teacher
    info: dict[str, Any] = {"against": jp.against if jp.kind != "none" else None}
    if jp.kind == "none" or jp.against != "teacher":
        (ctx.out / "reference.json").write_text(json.dumps(info))
        return info
    if not tp.name:
        raise StageError('judge.against = "teacher" needs a teacher: set teacher.model or '
                         "teacher.endpoint")
    items, _, msgs = _eval_set(p)
    n = jp.items or len(items)
    asked = [(str(r.id), m) for r, m in zip(items[:n], msgs[:n])]
    answers = Path(ctx.checkpoint_dir) / REFERENCE
    prog = lambda d, total: ctx.progress(d, total, "item")
    ep = p.evaluate
    with stage_errors("reference (the teacher's answers)", catch=(ValueError, OSError, UserError)):
        if tp.endpoint is not None:
            got = teacher_lib.teach_endpoint(_spec(tp.endpoint), asked, answers, progress=prog,
                                             max_tokens=ep.max_new_tokens, temperature=0.0)
        else:
            from fairtrial.ml.causal_lm.model import load_causal_lm

            model, tok = load_causal_lm(tp.model, device=ctx.device)
            got = teacher_lib.teach_local(model, tok, asked, answers, model_name=tp.model,
                                          batch_size=ep.batch_size,
                                          max_new_tokens=ep.max_new_tokens, progress=prog)
    write_jsonl(ctx.out / REFERENCE, ({"id": i, "text": got[i]["text"]} for i, _ in asked))
    info.update(teacher=tp.name, items=len(asked),
                empty=sum(1 for i, _ in asked if not got[i]["text"].strip()))
    (ctx.out / "reference.json").write_text(json.dumps(info))
    return info


def evaluate(ctx) -> dict[str, Any]:
    """GSM8K accuracy (greedy), maj@k and consistency (sampled), and the judged win/tie/loss
    against the data set's solutions, all as item scores paired across arms."""
    if (skipped := _skipped(ctx)) is not None:
        return skipped
    from fairtrial.ml.causal_lm.generate import generate
    from fairtrial.ml.causal_lm.model import load_causal_lm

    p = ctx.params
    ep, jp = p.evaluate, p.judge
    items, refs, msgs = _eval_set(p)
    with stage_errors("evaluate"):
        model, tok = load_causal_lm(str(Path(ctx.inputs["merge"]) / "model"), device=ctx.device)
        qinfo = json.loads((Path(ctx.inputs["quantize"]) / "quantize.json").read_text())
        if qinfo["enabled"]:
            from fairtrial.ml.causal_lm.quantize import load_quantized

            model = load_quantized(model, Path(ctx.inputs["quantize"]))
    t0 = time.perf_counter()
    greedy = generate(model, tok, msgs, max_new_tokens=ep.max_new_tokens, temperature=0.0,
                      batch_size=ep.batch_size)
    ctx.progress(1, 2 + ep.samples, "pass")
    samples: list[list[str]] = []
    for j in range(ep.samples):
        samples.append(generate(model, tok, msgs, max_new_tokens=ep.max_new_tokens,
                                temperature=ep.temperature, top_p=ep.top_p, seed=ep.seed + j,
                                batch_size=ep.batch_size))
        ctx.progress(2 + j, 2 + ep.samples, "pass")
    seconds = time.perf_counter() - t0

    ids = [r.id for r in items]
    digest = eval_set_digest(ids, [[r.prompt, ref] for r, ref in zip(items, refs)])
    base = {"eval_set": "gsm8k", "eval_set_digest": digest}
    rows: list[dict[str, Any]] = []
    extracted = [gsm8k.extract(g) for g in greedy]
    for i, g, e, ref in zip(ids, greedy, extracted, refs):
        rows.append({**base, "item_id": i, "metric": "accuracy",
                     "value": gsm8k.score(g, ref)})
        rows.append({**base, "item_id": i, "metric": "unparsed", "value": float(e.value is None)})
    if ep.samples:
        for n, (i, ref) in enumerate(zip(ids, refs)):
            answers = [gsm8k.extract(s[n]).value for s in samples]
            rows.append({**base, "item_id": i, "metric": "maj_at_k",
                         "value": sampling.maj_at_k(answers, ref, ep.k)})
            rows.append({**base, "item_id": i, "metric": "consistency",
                         "value": sampling.consistency(answers)})
    summary: dict[str, Any] = {
        "items": len(ids), "eval_path": ep.path, "shots": ep.shots,
        "accuracy": float(np.mean([r["value"] for r in rows if r["metric"] == "accuracy"])),
        "unparsed": sum(e.value is None for e in extracted),
        "extracted_by": {h: sum(e.how == h for e in extracted) for h in ("marker", "last", "none")},
        "samples": ep.samples, "k": ep.k, "tie_rule": sampling.TIE_RULE,
        "seconds": round(seconds, 1)}
    for m in ("maj_at_k", "consistency"):
        vals = [r["value"] for r in rows if r["metric"] == m]
        if vals:
            summary[m] = float(np.mean(vals))
    summary["findings"] = teacher_lib.role_findings(
        teacher=p.teacher.name, judge=jp.judge_name if jp.kind != "none" else None,
        students=[p.student.name])
    if jp.kind != "none":
        n = jp.items or len(items)
        if jp.against == "teacher":     # the reference stage's answers, in the items' order
            got = {r["id"]: r["text"] for r in map(json.loads, (
                Path(ctx.inputs["reference"]) / REFERENCE).read_text().splitlines())}
            opponent = [got[str(i)] for i in ids[:n]]
        else:
            opponent = [gsm8k.clean_solution(r.response) for r in items[:n]]
        with stage_errors("judge", catch=(ValueError, OSError, UserError)):
            judge = _judge(jp, ctx.device)
            pairs = judge_lib.judge_pairs(
                judge, ids[:n], [r.prompt for r in items[:n]], greedy[:n], opponent,
                # the reference judge's reference: the gold final answer as a sentence (the data
                # set's own solution is the opponent, so it cannot also be the reference)
                references=[f"The answer is {ref}." for ref in refs[:n]], retries=jp.retries)
        if getattr(judge, "failed_calls", 0) and all(pr.outcome == "error" for pr in pairs):
            # not one verdict and failed requests: the judge is down (or refuses us), which is
            # a broken setup, not a property of the contestants; unreadable verdicts are counted
            raise StageError(f"judge {judge.name}: no game could be judged after "
                             f"{jp.retries + 1} round(s) (last: {judge.errors[-1]})")
        s = judge_lib.summarize(pairs, seed=ep.seed)
        for pr in pairs:
            if not np.isnan(pr.score):
                rows.append({**base, "item_id": pr.prompt_id, "metric": "judged_win",
                             "value": pr.score})
            if not np.isnan(pr.score_inconsistent_as_tie):
                rows.append({**base, "item_id": pr.prompt_id, "metric": "judged_win_as_tie",
                             "value": pr.score_inconsistent_as_tie})
            # every judged pair has these two rows, so the pairs left out of judged_win are
            # item scores too and arms can be compared on them
            if pr.outcome != "error":
                rows.append({**base, "item_id": pr.prompt_id, "metric": "judged_inconsistent",
                             "value": float(pr.outcome == "inconsistent")})
            rows.append({**base, "item_id": pr.prompt_id, "metric": "judged_error",
                         "value": float(pr.outcome == "error")})
        summary["judge"] = {
            "name": judge.name, "kind": jp.kind, "against": jp.against, "n": s.n,
            "counts": dict(s.counts), "win_rate": s.win_rate,
            "win_rate_interval": list(s.win_rate_interval),
            "win_rate_inconsistent_as_tie": s.win_rate_inconsistent_as_tie,
            "position_consistency": s.position_consistency,
            "position_consistency_interval": list(s.position_consistency_interval),
            "judged": s.judged, "errors_first": list(getattr(judge, "errors", [])[:5])}
    with stage_errors("evaluate"):
        write_item_scores(Path(ctx.out), rows)
    write_jsonl(ctx.out / "outputs.jsonl",
           ({"id": i, "greedy": g, "extracted": e.value, "how": e.how, "reference": ref,
             "samples": [s[n] for s in samples]}
            for n, (i, g, e, ref) in enumerate(zip(ids, greedy, extracted, refs))))
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return {k: summary[k] for k in ("items", "accuracy", "unparsed") } | \
        {k: round(summary[k], 4) for k in ("maj_at_k", "consistency") if k in summary}
