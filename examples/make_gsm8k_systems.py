"""Make per-item score files of three rule-based "systems" on GSM8K, for the evaluation-only
example study `examples/gsm8k_rules.toml` (walked through in docs/tutorial-evaluation.md).

No model is needed: each system is a rule that answers from the data alone, and each answer is
scored against GSM8K's reference final answer (the number after `####`):

  last-number       the last number in the question (a trivial guess)
  largest-number    the largest number in the question (another trivial guess)
  last-calculation  the result of the last calculator step `<<48/2=24>>` in the reference worked
                    solution: a reader of worked solutions, right most of the time but not always
                    (the final answer is not always the last calculation); it abstains on the
                    questions whose solution has no calculator step, so its file lacks those items

Each system's file is JSONL, one line per question it answered:

  {"item_id": "test-0000", "value": true, "metric": "accuracy", "eval_set": "gsm8k-test",
   "item_digest": "<sha256 of the question, 16 hex>", "answer": "18"}

`value` is a JSON boolean (right or wrong), which `fairtrial import` counts as 1 or 0; the item
id is the question's 0-based line number in test.jsonl; `item_digest` lets the report check that
every system answered the same question under the same id.

Usage:
  python examples/make_gsm8k_systems.py [--data PATH] [--limit N] [--out DIR]

--data: GSM8K's test.jsonl, or the folder holding it (default: the `gsm8k` data set wherever
`fairtrial data list` finds it, e.g. ../shared/data/gsm8k; `fairtrial data fetch gsm8k` downloads
it). --limit: only the first N questions (default: all 1,319). --out: where the three files go
(default: ./gsm8k-systems).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
CALCULATION = re.compile(r"<<[^<>]*=([^<>]*)>>")
EVAL_SET = "gsm8k-test"


def number(text: str) -> float | None:
    """'1,234' -> 1234.0, '$18.' -> None is avoided by the caller's regex; None if not a number."""
    try:
        return float(text.replace(",", "").replace("$", "").strip().rstrip("."))
    except ValueError:
        return None


def question_numbers(question: str) -> list[float]:
    return [v for v in (number(m) for m in NUMBER.findall(question)) if v is not None]


def last_number(row: dict) -> float | None:
    nums = question_numbers(row["question"])
    return nums[-1] if nums else None


def largest_number(row: dict) -> float | None:
    nums = question_numbers(row["question"])
    return max(nums) if nums else None


def last_calculation(row: dict) -> float | None:
    steps = CALCULATION.findall(row["answer"])
    return number(steps[-1]) if steps else None


SYSTEMS = {"last-number": last_number, "largest-number": largest_number,
           "last-calculation": last_calculation}


def reference(row: dict) -> float:
    value = number(row["answer"].split("####")[-1])
    if value is None:
        raise ValueError(f"no reference answer after #### in {row['answer'][-40:]!r}")
    return value


def find_data(arg: str | None) -> Path:
    if arg:
        p = Path(arg).expanduser()
        return p / "test.jsonl" if p.is_dir() else p
    from fairtrial.data.registry import resolve   # the data set wherever fairtrial finds it

    return resolve("gsm8k") / "test.jsonl"


def main(argv: list[str] | None = None) -> dict[str, dict[str, int]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="GSM8K test.jsonl or its folder")
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions")
    ap.add_argument("--out", default="gsm8k-systems", help="output folder")
    args = ap.parse_args(argv)

    path = find_data(args.data)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:args.limit] if args.limit else rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, system in SYSTEMS.items():
        right = answered = 0
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i, row in enumerate(rows):
                answer = system(row)
                if answer is None:          # the rule has no answer: the item is missing
                    continue
                correct = abs(answer - reference(row)) < 1e-6
                answered += 1
                right += correct
                f.write(json.dumps({
                    "item_id": f"test-{i:04d}", "value": correct, "metric": "accuracy",
                    "eval_set": EVAL_SET,
                    "item_digest": hashlib.sha256(row["question"].encode()).hexdigest()[:16],
                    "answer": f"{answer:g}"}) + "\n")
        summary[name] = {"questions": len(rows), "answered": answered, "right": right}
        print(f"{name:17s} answered {answered:5,} of {len(rows):,} questions, right on {right:5,} "
              f"-> {out / (name + '.jsonl')}")
    return summary


if __name__ == "__main__":
    main()
