"""Rendering prompts (one function for training and evaluation), training examples with their
prompt/completion boundary, and the format gate that runs before any training."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from fairtrial.ml.causal_lm.chat import assistant_header, example
from fairtrial.ml.causal_lm.generate import render as render_chat
from fairtrial.recipes.toolcall.params import PromptParams
from fairtrial.recipes.toolcall.parsing import parse_strict


def messages(item: dict[str, Any], pp: PromptParams) -> list[dict[str, str]]:
    """The chat messages of an item: the system turn (the study's, else the item's own), then the
    user turn: the arm's prefix, a blank line, the item's prompt."""
    system = pp.system if pp.system is not None else item.get("system") or ""
    prefix = pp.prefix_value()
    user = f"{prefix}\n\n{item['prompt']}" if prefix else item["prompt"]
    return ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": user}]


def check_template(tok, name: str) -> None:
    if getattr(tok, "chat_template", None) is None:
        raise ValueError(f"model {name}: its tokenizer has no chat template; the toolcall recipe "
                         "renders prompts with the model's chat template (use an instruct model, "
                         "or save a tokenizer with a chat_template into the model folder)")


def prompt_text(tok, item: dict[str, Any], pp: PromptParams) -> str:
    """The prompt as the model sees it, assistant turn opened: what generation is given and what
    every training example starts with."""
    text, _ = render_chat(tok, messages(item, pp))
    return text


def format_gate(tok, items: list[dict[str, Any]], pp: PromptParams, max_len: int
                ) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """Checks before any training, and the training/valid examples they were made on.

    1. every training completion parses under the strict parser of its track;
    2. every training example keeps at least one completion token after the cut to max_len;
    3. the chat template's rendering of the whole training conversation starts with the rendered
       evaluation prompt (the prompt the model is evaluated on is the one it was trained on), and
       every rendered prompt ends with the assistant header the loss mask looks for.
    """
    header = assistant_header(tok)
    fails: dict[str, list[str]] = {"format": [], "truncation": [], "prompt": []}
    supervised: list[int] = []
    train_ex: list[np.ndarray] = []
    valid_ex: list[np.ndarray] = []
    for it in items:
        if it["part"] == "eval":
            continue
        where = f"{it['file']}:{it['line']}"
        p = parse_strict(it["track"], it["completion"])
        if not p.ok:
            fails["format"].append(f"{where}: {p.error}: {it['completion'][:80]!r}")
        prompt = prompt_text(tok, it, pp)
        full = tok.apply_chat_template(messages(it, pp) + [
            {"role": "assistant", "content": it["completion"]}], tokenize=False)
        ids, plen = example(tok, prompt, it["completion"])
        if not full.startswith(prompt) or list(ids[plen - len(header):plen]) != header:
            fails["prompt"].append(f"{where}: the rendered evaluation prompt is not the start of "
                                   "the rendered training conversation")
        n_sup = min(len(ids), max_len) - plen
        if it["part"] == "train":
            supervised.append(n_sup)
            if n_sup < 1:
                fails["truncation"].append(f"{where}: prompt of {plen} tokens, max_len {max_len}")
            train_ex.append(ids)
        else:
            valid_ex.append(ids)
    n_train = len(supervised)
    report = {
        "passed": not any(fails.values()), "n_train": n_train,
        "n_checked": n_train + len(valid_ex),
        "format_failures": len(fails["format"]), "truncation_failures": len(fails["truncation"]),
        "prompt_failures": len(fails["prompt"]),
        "examples": {k: v[:3] for k, v in fails.items() if v},
        "supervised_tokens": {"min": min(supervised, default=0),
                              "median": statistics.median(supervised) if supervised else 0},
        "header": header,
    }
    return report, train_ex, valid_ex


def gate_message(report: dict[str, Any]) -> str:
    parts = []
    if report["format_failures"]:
        parts.append(f"{report['format_failures']} of {report['n_checked']} training and "
                     f"validation completions are not in their track's format "
                     f"(e.g. {report['examples']['format'][0]})")
    if report["truncation_failures"]:
        parts.append(f"{report['truncation_failures']} training examples keep no completion "
                     f"token after the cut to prompt.max_len (e.g. "
                     f"{report['examples']['truncation'][0]})")
    if report["prompt_failures"]:
        parts.append(f"{report['prompt_failures']} prompts render differently for training and "
                     f"evaluation (e.g. {report['examples']['prompt'][0]})")
    return "format gate failed: " + "; ".join(parts) + \
        " (set prompt.allow_format_mismatch = true to report it as an integrity finding instead)"
