"""A client for OpenAI-compatible chat-completions endpoints (vLLM, llama.cpp's server, TGI, hosted
APIs): concurrent within a declared limit, retried with exponential back-off, resumable.

    spec = EndpointSpec(base_url="http://127.0.0.1:8000/v1", model="llama-70b",
                        api_key_env="TEACHER_API_KEY", max_concurrency=8)
    answers = ask_all(spec, [("item-1", [{"role": "user", "content": "2 + 2?"}]), ...],
                      "teacher/answers.jsonl", max_tokens=256, temperature=0.0)

**The API key** is read from the environment variable the spec *names* (`api_key_env`), when the
client is made, and goes only into the `Authorization` header: the spec, the answers file, logs and
error messages hold the variable's name, never its value. A variable that is not set is a one-line
`EndpointError` naming it. No `api_key_env`: no header (a local server).

**Concurrency.** The chat-completions protocol takes one conversation per request, so a batch is
`max_concurrency` requests in flight at once (a thread pool over one pooled HTTP client); a server
that batches (vLLM, llama.cpp with `--parallel`) batches them on its side.

**Retries.** A transient failure (a connection refused, dropped or timed out, HTTP 408, 429 or 5xx)
is retried up to `max_retries` times, waiting `backoff_s * 2**attempt` seconds (at most
`backoff_max_s`; longer when a 429 carries `Retry-After`). Any other status (400, 401, 404 ...) and
an answer that is not a chat completion fail at once. When an item runs out of tries, the requests
not yet sent are cancelled, those in flight finish, and `EndpointError` says how many answers are
kept and where.

**Resume.** Each answer is appended to the answers file (JSON Lines, one `{"id", "text",
"finish_reason", "model"}` per item, flushed as it arrives); `ask_all` first reads the file and asks
only for the ids it does not hold, so a killed stage re-asks only what it had no answer for. A last
line torn by the kill is dropped (the file is rewritten without it, atomically) before appending.

Why httpx2 and not the `openai` package: the openai client retries inside itself (its count and
waits are not observable per item, and it has no resumable batch), it pins its own HTTP stack, and
a client for one POST route does not need it. httpx2 (the maintained successor of httpx, already
required by huggingface_hub) gives the pooled, thread-safe client and the transport errors the
retry rule needs; the retry loop itself is the ten lines below rather than another dependency.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from fairtrial.errors import UserError

Messages = Sequence[Mapping[str, str]]
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class EndpointError(UserError):
    """An endpoint that cannot be used (no key, refused, down after retries); one line."""


@dataclass(frozen=True)
class EndpointSpec:
    """Where and how to ask; what a study file's `[...endpoint]` table holds."""

    base_url: str
    """Up to and including the API version, e.g. `http://127.0.0.1:8000/v1`;
    `/chat/completions` is appended."""
    model: str
    """The model name the server expects in the request."""
    api_key_env: str | None = None
    """The *name* of the environment variable that holds the API key; None: no key."""
    max_concurrency: int = 4
    """Requests in flight at once."""
    max_retries: int = 5
    """Retries of one request after a transient failure (so at most 1 + max_retries tries)."""
    backoff_s: float = 1.0
    """Wait before the first retry; doubles with each retry."""
    backoff_max_s: float = 60.0
    timeout_s: float = 300.0
    """Per request (connect, read, write)."""

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise EndpointError(f"endpoint.base_url must start with http:// or https://, got "
                                f"{self.base_url!r}")
        if not self.model:
            raise EndpointError("endpoint.model must name the model the server serves")
        if self.max_concurrency < 1 or self.max_retries < 0:
            raise EndpointError("endpoint.max_concurrency must be >= 1 and max_retries >= 0")
        if self.backoff_s < 0 or self.timeout_s <= 0:
            raise EndpointError("endpoint.backoff_s must be >= 0 and timeout_s > 0")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


def api_key(env: str | None) -> str | None:
    """The key held by the variable named `env` (None when `env` is None)."""
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise EndpointError(f"the API key variable {env} is not set (or is empty); export "
                            f"{env}=... before running, or set endpoint.api_key_env to the "
                            f"variable that holds the key")
    return value


class ChatClient:
    """One pooled HTTP client for `spec`; `complete` asks one conversation, with retries."""

    def __init__(self, spec: EndpointSpec, *, sleep: Callable[[float], None] = time.sleep):
        import httpx2

        self.spec = spec
        self._sleep = sleep
        self._httpx = httpx2
        key = api_key(spec.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx2.Client(
            headers=headers, timeout=spec.timeout_s,
            limits=httpx2.Limits(max_connections=spec.max_concurrency,
                                 max_keepalive_connections=spec.max_concurrency))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def complete(self, messages: Messages, **generation: Any) -> dict[str, Any]:
        """{"text", "finish_reason", "model"} of one conversation. `generation`: the request's
        other fields (max_tokens, temperature, top_p, seed, stop)."""
        body = {"model": self.spec.model, "messages": [dict(m) for m in messages], **generation}
        last = ""
        for attempt in range(self.spec.max_retries + 1):
            wait_s = min(self.spec.backoff_s * 2 ** attempt, self.spec.backoff_max_s)
            try:
                r = self._client.post(self.spec.url, json=body)
            except self._httpx.TransportError as e:  # refused, dropped, timed out
                last = f"{type(e).__name__}: {' '.join(str(e).split())[:200] or 'no detail'}"
            else:
                if r.status_code == 200:
                    return _parse(r, self.spec.url)
                last = f"HTTP {r.status_code}: {' '.join(r.text.split())[:200]}"
                if r.status_code not in TRANSIENT_STATUS:
                    raise EndpointError(f"{self.spec.url} refused the request ({last})")
                retry_after = r.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait_s = min(max(wait_s, float(retry_after)), self.spec.backoff_max_s)
            if attempt < self.spec.max_retries:
                self._sleep(wait_s)
        raise EndpointError(f"{self.spec.url} failed {self.spec.max_retries + 1} times "
                            f"(last: {last})")


def _parse(r, url: str) -> dict[str, Any]:
    try:
        data = r.json()
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not a string")
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise EndpointError(f"{url} answered something that is not a chat completion "
                            f"({type(e).__name__}: {e}; body starts {r.text[:120]!r})") from e
    return {"text": text, "finish_reason": choice.get("finish_reason"),
            "model": data.get("model")}


# ---------------------------------------------------------------------------------------------
# resumable batches


def read_answers(path: str | Path) -> dict[str, dict[str, Any]]:
    """The answers already in `path` by id (empty when it does not exist). A torn last line (a
    kill during a write) is dropped and the file rewritten without it; a bad line elsewhere is an
    error naming its line."""
    path = Path(path)
    if not path.exists():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = not raw.endswith(b"\n") and raw != b""
    out: dict[str, dict[str, Any]] = {}
    for i, line in enumerate(lines[:-1] if raw.endswith(b"\n") else lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = row
        except (ValueError, KeyError, TypeError) as e:
            if torn and i == len(lines):
                break
            raise EndpointError(f"{path} line {i}: not an answer row ({type(e).__name__}); "
                                f"delete the file to ask again") from e
    if torn:  # rewrite without the torn tail, atomically, so appends start on a fresh line
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in out.values()))
        os.replace(tmp, path)
    return out


def append_answers(f, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append answer rows to an open answers file (one JSON line each) and flush, so a kill
    loses at most the row being written."""
    for row in rows:
        f.write(json.dumps(dict(row)) + "\n")
    f.flush()


def ask_all(spec: EndpointSpec, items: Iterable[tuple[str, Messages]], answers: str | Path, *,
            progress: Callable[[int, int], None] | None = None,
            sleep: Callable[[float], None] = time.sleep,
            **generation: Any) -> dict[str, dict[str, Any]]:
    """Every item's answer ({id: {"id", "text", "finish_reason", "model"}}), asking only for the
    ids the answers file does not hold yet and appending each answer as it arrives."""
    items = [(str(i), m) for i, m in items]  # ids are strings in the answers file
    ids = [i for i, _ in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise EndpointError(f"item ids must be unique; {dup!r} appears twice")
    path = Path(answers)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_answers(path)
    todo = [(i, m) for i, m in items if i not in done]
    lock = threading.Lock()
    answered = [len(items) - len(todo)]  # items of this call with an answer
    if progress:
        progress(len(items) - len(todo), len(items))
    if not todo:
        return {i: done[i] for i in ids}

    with ChatClient(spec, sleep=sleep) as client, open(path, "a", encoding="utf-8") as f, \
            ThreadPoolExecutor(max_workers=spec.max_concurrency) as pool:

        def one(item_id: str, messages: Messages) -> None:
            row = {"id": item_id, **client.complete(messages, **generation)}
            with lock:
                append_answers(f, [row])
                done[item_id] = row
                answered[0] += 1
                if progress:
                    progress(answered[0], len(items))

        futures = [pool.submit(one, i, m) for i, m in todo]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((fu for fu in finished if fu.exception() is not None), None)
        if failed is not None:
            for fu in futures:
                fu.cancel()
            wait(futures)  # those in flight finish and are kept
            err = failed.exception()
            missing = sum(1 for i in ids if i not in done)
            raise EndpointError(f"{err}; {len(ids) - missing} of {len(ids)} answers are kept in "
                                f"{path} ({missing} missing: run again to ask only for those)"
                                ) from err
    return {i: done[i] for i in ids}
