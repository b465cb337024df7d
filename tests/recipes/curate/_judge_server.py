"""A scripted OpenAI-compatible judge for stage tests: a real HTTP server on 127.0.0.1 (a free
port), `POST /v1/chat/completions` only, that answers every request with the same text.

    with ScriptedChatServer("Verdict: A") as server:      # a position-biased judge
        judge = {"kind": "llm", "endpoint": {"base_url": server.base_url, "model": "biased"}}
        ...
        assert server.total == 2 * n

Standalone on purpose (standard library only, not `fairtrial.ml.serve`), so the stage's endpoint
client is checked against a server that shares no code with it. The response has the shape of an
OpenAI chat completion (`choices[0].message.content`), as `fairtrial.ml.serve.ChatServer` answers.
`requests` counts requests by the content of their last message (as ChatServer's hook does);
`bodies` keeps every request body.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class ScriptedChatServer:
    def __init__(self, text: str, *, model_name: str = "scripted-judge"):
        self.text, self.model_name = text, model_name
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.fail_next = 0
        """Answer this many next requests with HTTP 503 (counted in `failed`, not `requests`)."""
        self.failed = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler(server: ScriptedChatServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                body = json.loads(raw)
                last = str(body["messages"][-1]["content"])
            except (ValueError, KeyError, IndexError, TypeError) as e:
                return self._send(400, {"error": {"message": f"bad request: {e}"}})
            with server._lock:
                if server.fail_next > 0:
                    server.fail_next -= 1
                    server.failed += 1
                    return self._send(503, {"error": {"message": "overloaded"}})
                server.requests[last] += 1
                server.bodies.append(body)
            return self._send(200, {
                "id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion",
                "created": int(time.time()), "model": server.model_name,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": server.text}}]})

    return Handler
