"""The dashboard's routes and its security.

Security model (docs/ui.md says it for users):
- every request carries the per-start token (query `?token=`, the cookie set after the first use,
  or `Authorization: Bearer`); without it: 401. The token is compared in constant time.
- the Host header must name the bound address (DNS rebinding: a page on attacker.example whose
  name resolves to 127.0.0.1 still sends `Host: attacker.example`): else 403.
- cross-origin requests are refused (an `Origin` other than our own, `Sec-Fetch-Site: cross-site`
  or `same-site`): 403; the cookie is SameSite=Strict and HttpOnly.
- read-only: GET and HEAD only (405 otherwise).
- names a client sends (study, stage-run key, file name) are looked up among what exists in the
  store and in verified manifests by `fairtrial.app.dashboard`; a client's text is never used as
  a path.
  Static files are a fixed set read into memory at start.
- every response: no caching, no sniffing, no framing, a Content-Security-Policy that allows
  only this origin's scripts and styles.
"""

from __future__ import annotations

import hmac
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.responses import StreamingResponse

from fairtrial.app import dashboard
from fairtrial.errors import UserError

STATIC = Path(__file__).parent / "static"
TEXT_SUFFIXES = {".json", ".jsonl", ".txt", ".log", ".md", ".csv", ".tsv", ".toml", ".yaml", ".yml"}

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
}


def _json(data: Any, status: int = 200) -> Response:
    # orjson: a study of 10,000 stage runs is ~5 MB of JSON, and orjson writes it several times
    # faster than json; it also writes NaN and infinities as null, which JSON lacks
    body = orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status, media_type="application/json")


class Fresh:
    """Status reads shared between requests, served stale-while-revalidate: every open page polls
    once a second, and deriving the status of a study of 10,000 stage runs takes a good part of a
    second (every artifact's manifest is checked). A read older than `ttl` is answered at once
    and a fresh read starts in the background (one at a time per name); the first request for a
    name waits for its read. A page is thus behind the workspace by at most ttl + the time of one
    read + its own poll interval: about 2 s for small studies."""

    def __init__(self, ttl: float = 0.5) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._got: dict[str, tuple[float, Any]] = {}
        self._refreshing: set[str] = set()

    def _read(self, name: str, read) -> Any:
        value = read()
        self._got[name] = (time.monotonic(), value)
        return value

    def _refresh(self, name: str, read) -> None:
        try:
            with self._locks[name]:
                self._read(name, read)
        except Exception:  # noqa: BLE001 - gone or failing: the next request reads (and says why)
            self._got.pop(name, None)
        finally:
            self._refreshing.discard(name)

    def get(self, name: str, read):
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
            hit = self._got.get(name)
            if hit is not None:
                if time.monotonic() - hit[0] >= self.ttl and name not in self._refreshing:
                    self._refreshing.add(name)
                    threading.Thread(target=self._refresh, args=(name, read), daemon=True).start()
                return hit[1]
        with lock:  # no read yet: wait for it (and share it with requests arriving meanwhile)
            hit = self._got.get(name)
            return hit[1] if hit is not None else self._read(name, read)


def _error(e: UserError) -> Response:
    status = 404 if isinstance(e, dashboard.NotFound) else 400
    return _json({"error": str(e)}, status)


class Analyses:
    """Analyses computed for the report page, kept while the study's finished runs stay the same
    (the status fingerprint): a reload does not re-run the bootstrap."""

    def cached(self, name: str, fingerprint: str) -> dict | None:
        hit = self._done.get(name)
        return hit[1] if hit and hit[0] == fingerprint else None

    def __init__(self, resamples: int = 10_000) -> None:
        self.resamples = resamples  # `fairtrial report`'s default: the same headline
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, tuple[str, dict]] = {}

    def get(self, r, name: str, study: dict) -> dict:
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # one analysis of a study at a time; the others wait for it
            fp = study["fingerprint"]
            hit = self.cached(name, fp)
            if hit is None:
                hit = dashboard.dashboard_report(r, name, resamples=self.resamples)
                self._done[name] = (fp, hit)
            return hit


def create_app(r, token: str, allowed_hosts: set[str] | None,
               resamples: int = 10_000) -> FastAPI:
    """The app over `r` (a `fairtrial.app.dashboard.Reader`). `allowed_hosts`: the Host headers
    accepted (None: any, when bound to every interface; the token still guards every request)."""
    app = FastAPI(title="fairtrial", docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)  # a redirect would carry a client path elsewhere
    statics = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.is_file()}
    analyses = Analyses(resamples)
    fresh = Fresh()

    bodies: dict[str, tuple[dict, Any, bytes]] = {}
    """The last JSON body of each study, kept with the status read it was made from: the pages
    polling a study between two reads get the same bytes without serialising 5 MB again."""

    def study_of(name: str) -> dict:
        return fresh.get("study:" + name, lambda: dashboard.dashboard_study(r, name))
    def cookie_name(request: Request) -> str:
        # cookies are shared by every port of a host: one per port, so two dashboards coexist
        return f"fairtrial_token_{request.url.port or ''}"

    def has_token(request: Request) -> bool:
        given = [request.query_params.get("token"), request.cookies.get(cookie_name(request))]
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        return any(g and hmac.compare_digest(g.encode(), token.encode()) for g in given)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = (request.headers.get("host") or "").lower()
        if allowed_hosts is not None and host not in allowed_hosts:
            resp: Response = PlainTextResponse(
                "403: this Host is not the dashboard's address (DNS-rebinding protection)", 403)
        elif (origin := request.headers.get("origin")) is not None \
                and origin.lower() != f"{request.url.scheme}://{host}":
            resp = PlainTextResponse("403: cross-origin requests are refused", 403)
        elif request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            resp = PlainTextResponse("403: cross-site requests are refused", 403)
        elif request.method not in ("GET", "HEAD"):
            resp = PlainTextResponse("405: the dashboard is read-only", 405)
        elif not has_token(request):
            resp = PlainTextResponse("401: this dashboard needs its token: open the address "
                                     "`fairtrial ui` printed (it ends in ?token=...)", 401)
        elif request.query_params.get("token") and not request.url.path.startswith("/api/"):
            # a page opened with the token: keep it in a cookie and take it out of the address
            # (history, screenshots and the Referer never show it)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            resp = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), 303)
            resp.set_cookie(cookie_name(request), token, httponly=True, samesite="strict",
                            path="/")
        else:
            resp = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    # ------------------------------------------------------------ pages (a shell; app.js draws)
    def page(kind: str, **data: str) -> Response:
        import html

        attrs = " ".join(f'data-{k}="{html.escape(str(v), quote=True)}"' for k, v in data.items())
        title = html.escape(data.get("name") or data.get("key", "")[:12] or "studies")
        body = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
                f"<title>fairtrial: {title}</title><link rel='stylesheet' href='/static/style.css'>"
                f"<link rel='icon' href='data:,'></head>"
                f"<body data-page='{kind}' {attrs}><header><a class='brand' href='/'>fairtrial</a>"
                f"<nav id='crumbs'></nav><span id='live' class='live'></span></header>"
                f"<main id='app'><p class='muted'>loading...</p></main>"
                f"<script src='/static/app.js'></script></body></html>")
        return Response(body, media_type="text/html; charset=utf-8")

    @app.get("/")
    def studies_page():
        return page("studies")

    @app.get("/run/{key}")
    def run_page(key: str):
        return page("run", key=key)

    def study_page(kind: str):
        def show(name: str):
            return page(kind, name=name)
        return show

    for kind in ("study", "report", "compare"):  # /study/NAME, /report/NAME, /compare/NAME
        app.add_api_route(f"/{kind}/{{name}}", study_page(kind), methods=["GET"])

    @app.get("/static/{name}")
    def static(name: str):
        data = statics.get(name)  # a fixed set, read at start: no path from the client
        if data is None:
            return PlainTextResponse("404: no such static file", 404)
        kind = {"js": "text/javascript", "css": "text/css", "png": "image/png"}.get(
            name.rsplit(".", 1)[-1], "application/octet-stream")
        return Response(data, media_type=kind)

    # ------------------------------------------------------------ API (JSON)
    @app.get("/api/studies")
    def api_studies():
        rows = fresh.get("studies", lambda: dashboard.dashboard_studies(r))
        for s in rows:
            hit = analyses.cached(s["name"], s["fingerprint"])
            s["verdict"] = {"headline": hit["headline"], "verdict": hit["verdict"]} if hit else None
        return _json({"workspace": str(r.ws.root), "studies": rows})

    @app.get("/api/study/{name}")
    def api_study(name: str):
        try:
            read = study_of(name)
        except UserError as e:
            return _error(e)
        hit = analyses.cached(name, read["fingerprint"])
        verdict = {"headline": hit["headline"], "verdict": hit["verdict"]} if hit else None
        last = bodies.get(name)
        if last is not None and last[0] is read and last[1] == verdict:  # polled, nothing new
            return Response(last[2], media_type="application/json")
        st = dict(read, verdict=verdict)
        # fields that are None (or a False `shared`) left out: half the bytes of a large study
        st["runs"] = {k: {f: v for f, v in run.items() if v is not None and v is not False}
                      for k, run in st["runs"].items()}
        resp = _json(st)
        bodies[name] = (read, verdict, resp.body)
        return resp

    @app.get("/api/run/{key}")
    def api_run(key: str):
        try:
            return _json(dashboard.dashboard_run(r, key))
        except UserError as e:
            return _error(e)

    @app.get("/api/run/{key}/log")
    def api_log(key: str, offset: int = -1):
        try:
            return _json(dashboard.dashboard_log(r, key, offset))
        except UserError as e:
            return _error(e)

    @app.get("/api/run/{key}/file")
    def api_file(key: str, name: str = ""):
        try:
            f = dashboard.artifact_file(r, key, name)
        except UserError as e:
            return _error(e)
        suffix = Path(name).suffix.lower()
        if suffix in TEXT_SUFFIXES:
            kind, disp = "text/plain; charset=utf-8", "inline"
        else:  # never rendered by the browser on this origin (an HTML artifact would run here)
            kind, disp = "application/octet-stream", "attachment"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)

        def chunks():
            with f:
                while data := f.read(1 << 16):
                    yield data

        return StreamingResponse(chunks(), media_type=kind,
                                 headers={"Content-Disposition": f'{disp}; filename="{safe}"'})

    @app.get("/api/report/{name}")
    def api_report(name: str):
        try:
            return _json(analyses.get(r, name, dashboard.dashboard_study(r, name)))
        except UserError as e:
            return _error(e)

    @app.get("/api/compare/{name}")
    def api_compare(name: str, a: str = "", b: str = "", metric: str | None = None,
                    eval_set: str | None = None, top: int = 25):
        try:
            if not a or not b:
                st = study_of(name)
                arms = st["arms"]
                a = a or (st.get("control") or (arms[0] if arms else ""))
                b = b or next((x for x in arms if x != a), "")
            return _json(dashboard.dashboard_compare(r, name, a, b, metric or None,
                                                    eval_set or None, max(1, min(top, 500))))
        except UserError as e:
            return _error(e)

    return app
