"""A path-traversal corpus against every route that takes a name: zero bytes from outside the
workspace, for each payload. MLflow's artifact endpoints had more than fifteen such CVEs, each fix
checking one encoding; here no name a client sends is ever used as a path (files are looked up
by stage-run key and a name listed in a verified manifest), and these cases keep it so.

Each payload is sent three ways: as the file-name query parameter, as a path segment through the
HTTP client (which percent-encodes it), and raw, as uvicorn hands a request line to the app
(path = percent-decoded raw path, no normalisation of dot segments)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote, unquote

import pytest

from tests.web.conftest import SECRET, TOKEN

OUTSIDE_MARKERS = (SECRET, b"root:x:0:0", b"[fonts]")


def payloads(outside: str) -> list[tuple[str, str]]:
    return [
        ("dotdot", "../../../../outside.txt"),
        ("dotdot-slash", "../"),
        ("dotdot-many", "../" * 12 + "etc/passwd"),
        ("backslash", "..\\..\\..\\..\\outside.txt"),
        ("mixed-slashes", "..\\../..\\../outside.txt"),
        ("encoded", "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2foutside.txt"),
        ("encoded-upper", "%2E%2E%2F%2E%2E%2Foutside.txt"),
        ("double-encoded", "%252e%252e%252f%252e%252e%252foutside.txt"),
        ("encoded-backslash", "..%5c..%5c..%5coutside.txt"),
        ("overlong-utf8", "..%c0%af..%c0%afoutside.txt"),
        ("inside-then-up", "sub/../../../../outside.txt"),
        ("dots-and-slashes", "....//....//....//outside.txt"),
        ("hash-trick", "ok.txt#/../../../../outside.txt"),
        ("encoded-hash", "ok.txt%23/../../../outside.txt"),
        ("query-trick", "ok.txt?/../../../../outside.txt"),
        ("encoded-query", "ok.txt%3f/../../../outside.txt"),
        ("absolute", outside),
        ("absolute-passwd", "/etc/passwd"),
        ("file-url", "file://" + outside),
        ("windows-absolute", "C:\\Windows\\win.ini"),
        ("unc", "\\\\localhost\\c$\\outside.txt"),
        ("nul", "ok.txt\x00/../../../outside.txt"),
        ("encoded-nul", "ok.txt%00../../../outside.txt"),
        ("symlink-out", "leak.txt"),
        ("manifest-itself", "manifest.json/../../../../../outside.txt"),
        ("tilde", "~/outside.txt"),
    ]


CASES = [c[0] for c in payloads("/x")]


def _no_outside_bytes(body: bytes) -> None:
    for m in OUTSIDE_MARKERS:
        assert m not in body, f"bytes from outside the workspace were served: {m!r}"


def _raw_get(app, raw_target: str) -> tuple[int, bytes]:
    """One GET through the ASGI app as uvicorn makes it from a raw request line."""
    raw_path, _, qs = raw_target.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode("latin-1", "replace"),
             "query_string": qs.encode("latin-1", "replace"), "root_path": "",
             "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {TOKEN}".encode())],
             "client": ("127.0.0.1", 5), "server": ("testserver", 80)}
    out = {"status": 0, "body": b""}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg):
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return out["status"], out["body"]


@pytest.fixture(scope="module")
def corpus(built):
    return dict(payloads(str(built["tmp"] / "outside.txt")))


@pytest.mark.parametrize("case", CASES)
def test_file_name_parameter(client, built, corpus, case):
    """/api/run/{key}/file?name=PAYLOAD on the artifact that holds the outward symlink."""
    for key in (built["link_key"], built["keys"]["source"][0]):
        r = client.get(f"/api/run/{key}/file", params={"name": corpus[case]})
        _no_outside_bytes(r.content)
        assert r.status_code == 404, (case, r.status_code, r.content[:200])


ROUTES = ["/api/run/{}", "/api/run/{}/log", "/api/study/{}", "/api/report/{}", "/api/compare/{}",
          "/static/{}", "/study/{}", "/run/{}", "/report/{}", "/compare/{}"]


@pytest.mark.parametrize("case", CASES)
def test_every_route_taking_a_name(client, corpus, case):
    p = corpus[case]
    for route in ROUTES:
        quoted = route.format(quote(p, safe=""))  # one path segment, whatever it holds
        r = client.get(quoted)
        _no_outside_bytes(r.content)
        if quoted.startswith(("/api/", "/static/")):
            assert r.status_code in (404, 400), (case, quoted, r.status_code)
        if "\x00" not in p:  # as typed (the client removes dot segments; NUL: the raw test)
            _no_outside_bytes(client.get(route.format(p)).content)


@pytest.mark.parametrize("case", CASES)
def test_raw_request_lines(client, built, corpus, case):
    p = corpus[case]
    key = built["link_key"]
    targets = [f"/api/run/{key}/file?name={p}", f"/api/run/{key}/file?name={quote(p)}",
               f"/static/{p}", f"/api/study/{p}", f"/api/run/{p}/log", f"/api/report/{p}"]
    for t in targets:
        status, body = _raw_get(client.app, t)
        _no_outside_bytes(body)
        assert status in (404, 400, 405, 307), (case, t, status)


def test_the_symlinked_file_is_listed_but_never_served(client, built):
    """The manifest lists leak.txt (commit hashes through the link), the dashboard shows the name
    and refuses the bytes; the plain file next to it is served."""
    d = client.get(f"/api/run/{built['link_key']}").json()
    assert "leak.txt" in d["manifest"]["files"]
    r = client.get(f"/api/run/{built['link_key']}/file", params={"name": "leak.txt"})
    assert r.status_code == 404 and "link" in r.json()["error"]
    r = client.get(f"/api/run/{built['link_key']}/file", params={"name": "ok.txt"})
    assert r.status_code == 200 and r.content == b"fine\n"
