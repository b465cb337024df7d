"""The dashboard's JSON API and its security, through FastAPI's TestClient (no server, no
browser): every number equals what the application layer returns, and every guard refuses."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from fairtrial.app import report as app_report
from fairtrial.app import status as app_status
from fairtrial.web import create_app
from fairtrial.web.server import allowed_hosts
from tests.web.conftest import TOKEN, loads


# ------------------------------------------------------------------ security
@pytest.mark.parametrize("path", ["/", "/study/study", "/api/studies", "/api/study/study",
                                  "/static/app.js", "/api/report/study", "/nonexistent"])
def test_every_route_needs_the_token(reader, path):
    app = create_app(reader, TOKEN, {"testserver"})
    with TestClient(app) as c:
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 401 and b"token" in r.content
        r = c.get(path, headers={"Authorization": "Bearer wrong-token"}, follow_redirects=False)
        assert r.status_code == 401
        r = c.get(path + ("&" if "?" in path else "?") + "token=" + TOKEN[:-1],
                  follow_redirects=False)
        assert r.status_code == 401


def test_token_in_the_address_becomes_a_cookie_and_leaves_the_address(reader):
    app = create_app(reader, TOKEN, {"testserver"})
    with TestClient(app) as c:
        r = c.get(f"/study/study?token={TOKEN}&x=1", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/study/study?x=1"
        sc = r.headers["set-cookie"].lower()
        assert "httponly" in sc and "samesite=strict" in sc
        r = c.get("/api/studies")  # the cookie alone now
        assert r.status_code == 200
    with TestClient(app) as fresh:  # no cookie, no token
        assert fresh.get("/api/studies").status_code == 401


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example",
                                  "testserver.evil.example", ""])
def test_a_wrong_host_header_is_refused(client, host):
    r = client.get("/api/studies", headers={"Host": host})
    assert r.status_code == 403 and b"DNS-rebinding" in r.content


def test_allowed_hosts_are_the_bound_address():
    assert allowed_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765"}
    assert allowed_hosts("::1", 9) == {"[::1]:9", "localhost:9"}
    assert allowed_hosts("10.0.0.5", 80) == {"10.0.0.5:80"}
    assert allowed_hosts("0.0.0.0", 80) is None  # any Host; the token still guards it


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"},
                                     {"Origin": "http://testserver.evil.example"},
                                     {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site"}])
def test_cross_origin_requests_are_refused(client, headers):
    r = client.get("/api/studies", headers=headers)
    assert r.status_code == 403 and b"refused" in r.content


def test_same_origin_requests_pass(client):
    r = client.get("/api/studies", headers={"Origin": "http://testserver",
                                            "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_read_only(client, method):
    assert client.request(method, "/api/studies").status_code == 405


def test_security_headers(client):
    h = client.get("/").headers
    assert h["x-content-type-options"] == "nosniff" and h["cache-control"] == "no-store"
    assert "script-src 'self'" in h["content-security-policy"] and h["x-frame-options"] == "DENY"


# ------------------------------------------------------------------ what it shows
def test_studies_list_matches_status(client, built):
    d = loads(client.get("/api/studies"))
    by = {s["name"]: s for s in d["studies"]}
    assert set(by) == {"study", "broken"}
    want = {st.study: st.totals for st in app_status.status(built["ws"].root).read()}
    assert {n: s["totals"] for n, s in by.items()} == want
    assert by["study"]["totals"] == {"done": 7, "total": 7}
    assert by["broken"]["totals"]["failed"] == 2
    assert by["study"]["question"] == "Does the effect help?" and not by["study"]["running"]


def test_study_grid_is_status_json(client, built):
    d = loads(client.get("/api/study/broken"))
    want = app_status.status(built["ws"].root, "broken").read()[0].to_dict()
    assert d["cells"] == want["cells"] and d["totals"] == want["totals"]
    assert d["stages"] == ["source", "work", "score"] and d["arms"] == ["base", "better"]
    failed = [r for r in d["runs"].values() if r["state"] == "failed"]
    assert failed and all(r["error"] == "bad batch in shard 3" for r in failed)


def test_stage_run_shows_declared_and_effective_params_attempts_and_manifest(client, built):
    key = built["keys"]["work"][0]
    d = loads(client.get(f"/api/run/{key}"))
    assert d["state"] == "done" and d["stage"] == "work" and d["verify"] == "ok"
    assert d["params"]["micro_batch"] == 8 and d["effective_params"]["micro_batch"] == 2
    assert [a["changed"]["micro_batch"] for a in d["adjustments"]] == [[8, 4], [4, 2]]
    assert [a["outcome"] for a in d["attempts"]] == ["done"]
    m = json.loads((built["ws"].artifact(key) / "manifest.json").read_text())
    assert d["manifest"]["files"] == {n: {"sha256": f["sha256"], "size": f["size"]}
                                      for n, f in m["files"].items()}
    assert d["cells"] and {c["study"] for c in d["cells"]} == {"study"}


def test_failed_run_shows_its_error(client, built):
    d = loads(client.get(f"/api/run/{built['failed_key']}"))
    assert d["state"] == "failed" and d["error"].startswith("bad batch in shard 3")
    assert d["manifest"] is None and d["attempts"][0]["outcome"] == "failed"


def test_log_tail_follows_from_an_offset(client, built):
    key = built["keys"]["source"][0]
    d = loads(client.get(f"/api/run/{key}/log"))
    assert d["text"].startswith(f"stage {key[:12]} started") and d["offset"] == d["size"]
    with open(built["ws"].log(key), "a") as f:
        f.write("one more line\n")
    d2 = loads(client.get(f"/api/run/{key}/log", params={"offset": d["offset"]}))
    assert d2["text"] == "one more line\n" and d2["offset"] == d["offset"] + 14


def test_file_served_by_key_and_manifest_name(client, built):
    key = built["keys"]["source"][0]
    r = client.get(f"/api/run/{key}/file", params={"name": "sub/notes.txt"})
    assert r.status_code == 200 and r.content == b"hello\n"
    assert r.headers["content-type"].startswith("text/plain")
    m = json.loads((built["ws"].artifact(key) / "manifest.json").read_text())
    assert hashlib.sha256(r.content).hexdigest() == m["files"]["sub/notes.txt"]["sha256"]
    score = built["keys"]["score"][0]
    r = client.get(f"/api/run/{score}/file", params={"name": "item_scores.parquet"})
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    assert r.headers["content-disposition"].startswith("attachment")  # never rendered here


def test_report_is_the_analysis(client, built):
    d = loads(client.get("/api/report/study"))
    want = app_report.analyse(built["spec"], built["ws"], resamples=200)
    assert d["headline"] == want.headline and d["verdict"] == want.verdict
    assert d["blocks"][0] == {"kind": "para", "text": want.headline, "class": "headline"}
    assert any(b["kind"] == "image" for b in d["blocks"])
    assert any(b["kind"] == "heading" and b["text"] == "Integrity checks" for b in d["blocks"])
    # the studies page now shows the verdict it computed
    s = {x["name"]: x for x in loads(client.get("/api/studies"))["studies"]}
    assert s["study"]["verdict"]["headline"] == want.headline


def test_compare_pairs_items_and_seeds(client, built):
    d = loads(client.get("/api/compare/study", params={"a": "better", "b": "base", "top": 5}))
    assert d["metric"] == "score" and d["seeds"] == [0, 1] and d["n_items"] == 30
    assert d["only_a"] == d["only_b"] == 0 and len(d["items"]) == 5
    # recomputed here from the item-score files: mean over seeds of (better - base) per item
    from fairtrial.scores import read_item_scores
    vals = {}
    for (arm, rep, stage), key in built["plan"].cells.items():
        if stage == "score":
            t = read_item_scores(built["ws"].artifact(key) / "item_scores.parquet").to_pylist()
            for row in t:
                vals[(arm, rep, row["item_id"])] = row["value"]
    diffs = {i: sum(vals[("better", s, i)] - vals[("base", s, i)] for s in (0, 1)) / 2
             for i in {k[2] for k in vals}}
    assert d["mean_diff"] == pytest.approx(sum(diffs.values()) / len(diffs))
    top = sorted(diffs, key=lambda i: -abs(diffs[i]))[:5]
    assert [it["item_id"] for it in d["items"]] == top
    assert d["items"][0]["diff"] == pytest.approx(diffs[top[0]])
    assert d["a_higher"] + d["b_higher"] + d["ties"] == 30


def test_compare_unknown_arm_is_a_clear_404(client):
    r = client.get("/api/compare/study", params={"a": "nope", "b": "base"})
    assert r.status_code == 404 and 'no item scores for arm "nope"' in loads(r)["error"]


@pytest.mark.parametrize("path", ["/api/study/nope", "/api/report/nope", "/api/run/" + "a" * 64,
                                  "/api/run/zz", "/api/run/" + "a" * 64 + "/log"])
def test_unknown_names_are_404_with_a_message(client, path):
    r = client.get(path)
    assert r.status_code == 404 and loads(r)["error"]


def test_compare_shows_item_text_where_the_recipe_exposes_it(client, monkeypatch):
    """The engine's test recipe has no eval texts; a recipe's integrity hook that gives them
    (ilm: the test document, lvm: the test window) reaches the compare page through gather."""
    import fairtrial.collect as collect

    real = collect.gather

    def with_texts(ws, store, spec):
        got = real(ws, store, spec)
        return dict(got, eval_texts={"test": {f"item{i:05d}": f"text of item {i}" for i in range(30)}})

    monkeypatch.setattr(collect, "gather", with_texts)
    d = loads(client.get("/api/compare/study", params={"a": "better", "b": "base", "top": 3}))
    assert d["has_text"] and [it["text"] for it in d["items"]] == [
        f"text of item {int(it['item_id'][4:])}" for it in d["items"]]


def test_a_grid_study_lists_its_arms(tmp_path):
    """A [grid] study names no [[arms]]: the dashboard's study read model takes them from the
    plan (the grid's arms, in plan order), not from the study file's arm list."""
    from fairtrial.app import dashboard, resolve
    from tests.web.conftest import _plan

    (tmp_path / "grid.toml").write_text('''recipe = "_test"
name = "grid"
question = "Which effect?"
replicates = [0]
[endpoint]
metric = "score"
[decision]
compare = "all-pairs"
[grid]
name = "e{effect}"
effect = [0.0, 0.5]
''')
    ws = resolve.open_workspace(tmp_path / "ws")
    store = resolve.open_store(ws)
    _plan(ws, store, tmp_path / "grid.toml")
    store.dispose()
    r = dashboard.reader(ws.root)
    try:
        assert dashboard.dashboard_study(r, "grid")["arms"] == ["e0.0", "e0.5"]
    finally:
        r.store.dispose()
