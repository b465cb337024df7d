"""The teacher block: a response per selected prompt from a teacher model, cached per item, so a
study can distil a teacher instead of training on the data set's own responses.

    answers = teach_local(model, tok, items, ctx.checkpoint_dir / "teacher.jsonl",
                          max_new_tokens=256)
    answers = teach_endpoint(spec, items, ctx.checkpoint_dir / "teacher.jsonl", max_tokens=256)
    findings = role_findings(teacher="llama-70b", judge="llama-70b", students=["smollm2-135m"])

`items` are (id, chat messages) pairs. Both paths write the same answers file (JSON Lines,
`{"id", "text", ...}` per item, appended as answers arrive: `fairtrial.ml.endpoint`'s format), and
both read it first and ask only for the ids it lacks, so a stage killed halfway (kept in
`ctx.checkpoint_dir`) resumes where it stopped. A local teacher is any causal LM of the ML layer,
asked in batches through `fairtrial.ml.causal_lm.generate` (the chat template applied there);
an endpoint teacher is asked through `fairtrial.ml.endpoint.ask_all` (concurrency, retries,
back-off and the API key by variable name are its business).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fairtrial.ml.endpoint import EndpointSpec, append_answers, ask_all, read_answers
from fairtrial.recipes.curate.judge import judge_findings

Item = tuple[str, Sequence[dict[str, str]]]


def teach_local(model, tokenizer, items: Sequence[Item], answers: str | Path, *,
                model_name: str = "local", batch_size: int = 8, max_new_tokens: int = 256,
                temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, Any]]:
    """Every item's answer from a local model; only the items the answers file lacks are asked,
    in batches of `batch_size`, each batch appended as soon as it is generated. A batch's seed is
    `seed` + the index of its first item in `items`, so a resumed run samples what an unbroken one
    would have for batches that start at the same item."""
    from fairtrial.ml.causal_lm.generate import generate  # torch: imported when used

    ids = [i for i, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"teacher: item ids must be unique; {len(ids) - len(set(ids))} repeat")
    path = Path(answers)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_answers(path)
    todo = [(n, i, m) for n, (i, m) in enumerate(items) if i not in done]
    with open(path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), batch_size):
            part = todo[start:start + batch_size]
            texts = generate(model, tokenizer, [m for _, _, m in part],
                             max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                             seed=seed + part[0][0], batch_size=batch_size)
            rows = [{"id": i, "text": t, "finish_reason": None, "model": model_name}
                    for (_, i, _), t in zip(part, texts)]
            append_answers(f, rows)
            done.update((r["id"], r) for r in rows)
            if progress:
                progress(len(ids) - len(todo) + start + len(part), len(ids))
    return {i: done[i] for i in ids}


def teach_endpoint(spec: EndpointSpec, items: Sequence[Item], answers: str | Path, *,
                   progress: Callable[[int, int], None] | None = None,
                   **generation: Any) -> dict[str, dict[str, Any]]:
    """Every item's answer from an OpenAI-compatible endpoint (`fairtrial.ml.endpoint.ask_all`)."""
    return ask_all(spec, items, answers, progress=progress, **generation)


def role_findings(*, teacher: str | None, judge: str | None,
                  students: Sequence[str] = ()) -> list[str]:
    """Integrity findings about who plays which part: a judge that is also the teacher (it would
    judge answers distilled from its own) or one of the students (`judge.judge_findings`). Names
    compare case- and space-blind."""
    if not judge:
        return []
    found = []
    if teacher and judge_findings(judge, [teacher]):
        found.append(f"the judge {judge!r} is also the teacher: students distilled from it are "
                     f"judged by it, which favours answers that imitate it; use another judge")
    return found + judge_findings(judge, students)
