"""A minimal OpenAI-compatible chat-completions server around a local causal LM, for tests and for
offline studies that want to treat a local model as an endpoint.

    model, tok = load_causal_lm("smollm2-135m")
    with ChatServer(model, tok, model_name="smollm2-135m") as server:   # 127.0.0.1, a free port
        spec = EndpointSpec(base_url=server.base_url, model="smollm2-135m")
        ...
    python -m fairtrial.ml.serve --model smollm2-135m --port 8000    # the same, in the foreground

Routes: `POST /v1/chat/completions` (`messages`, `max_tokens`, `temperature`, `top_p`, `seed`,
`stop`; `n` = 1 only; no streaming) and `GET /v1/models`. Generation is
`fairtrial.ml.causal_lm.generate.generate`, one request at a time (a lock: the model is not
thread-safe, and on a CPU batching concurrent requests would gain little).

The standard library's `ThreadingHTTPServer` is enough for this (one route, local use, no TLS)
and keeps FastAPI and uvicorn out of the dependencies.

Test hooks (attributes of the server, safe to set from the test's thread): `drop_next` closes
the connection of that many next requests without answering (a dropped connection),
`fail_next` answers the listed statuses to the next requests (e.g. `[503, 429]`), `delay_s`
waits before each answer, `requests` counts requests by the content of their last message.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class ChatServer:
    """The server, run in a daemon thread; a context manager that stops it."""

    def __init__(self, model, tokenizer, *, model_name: str = "local", host: str = "127.0.0.1",
                 port: int = 0, default_max_tokens: int = 64):
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.default_max_tokens = default_max_tokens
        self.drop_next = 0
        self.fail_next: list[int] = []
        self.delay_s = 0.0
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()       # guards the hooks and counters
        self._generating = threading.Lock()  # one generation at a time
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        from fairtrial.ml.causal_lm.generate import generate

        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        if body.get("n", 1) != 1 or body.get("stream"):
            raise ValueError("only n = 1 without streaming is served")
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens")
                         or self.default_max_tokens)
        with self._generating:
            text = generate(self.model, self.tokenizer, [messages], max_new_tokens=max_tokens,
                            temperature=float(body.get("temperature", 0.0) or 0.0),
                            top_p=float(body.get("top_p", 1.0) or 1.0),
                            seed=int(body.get("seed", 0) or 0), stop=stop)[0]
        return {"id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_name,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}]}


def _handler(server: ChatServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: tests and studies have their own logs
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [
                    {"id": server.model_name, "object": "model", "owned_by": "fairtrial"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                body = json.loads(raw)
                last = str(body["messages"][-1]["content"])
            except (ValueError, KeyError, IndexError, TypeError) as e:
                return self._send(400, {"error": {"message": f"bad request: {e}"}})
            with server._lock:
                server.requests[last] += 1
                drop = server.drop_next > 0
                server.drop_next -= drop
                status = server.fail_next.pop(0) if server.fail_next and not drop else None
            if drop:  # the test hook: close the connection with no answer
                self.close_connection = True
                self.connection.shutdown(2)  # socket.SHUT_RDWR
                return None
            if status is not None:
                return self._send(status, {"error": {"message": f"test hook: {status}"}})
            if server.delay_s:
                time.sleep(server.delay_s)
            try:
                answer = server.answer(body)
            except (ValueError, TypeError) as e:
                return self._send(400, {"error": {"message": str(e)}})
            return self._send(200, answer)

    return Handler


def main(argv: list[str] | None = None) -> None:
    import argparse

    from fairtrial.ml.causal_lm.model import load_causal_lm

    p = argparse.ArgumentParser(description="OpenAI-compatible chat server around a local model")
    p.add_argument("--model", required=True, help="short name, hub name, folder or GGUF file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)
    model, tok = load_causal_lm(args.model)
    server = ChatServer(model, tok, model_name=args.model, host=args.host, port=args.port)
    print(f"serving {args.model} at {server.base_url}", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    main()
