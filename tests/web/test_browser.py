"""The dashboard in a real browser: Playwright for Python driving Debian's chromium against
`fairtrial ui` running as a subprocess, on a workspace where studies of the engine's test recipe
run in the background. Every wait has a deadline; nothing sleeps a fixed time.

Screenshots of every page go to $FAIRTRIAL_UI_SCREENSHOTS (default: a temporary folder).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import study_text
from tests.web.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); the browser tests need it",
                allow_module_level=True)

EXE = str(Path(sys.executable).parent / "fairtrial")


def _start(args, env, cwd, log):
    return subprocess.Popen([EXE, *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _end(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = Path(os.environ.get("FAIRTRIAL_UI_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`fairtrial ui` on a workspace where study "slow" (work stages of a few seconds, one at a
    time) and study "broken" (one arm fails) run in the background."""
    tmp = tmp_path_factory.mktemp("live")
    env = dict(os.environ, FAIRTRIAL_WORKSPACE=str(tmp / "ws"), FAIRTRIAL_CRASH_DIR=str(tmp))
    env.pop("FAIRTRIAL_DB_URL", None)
    (tmp / "slow.toml").write_text(study_text(params="sleep = 2.0\nsteps = 4\noom_above = 2").replace(
        'question = "Does the effect help?"', 'name = "slow"\nquestion = "Does the effect help?"'))
    (tmp / "broken.toml").write_text(study_text(
        params="size = 12", better='fail = true\nfail_message = "bad batch in shard 3"').replace(
        'question = "Does the effect help?"', 'name = "broken"\nquestion = "Does it break?"'))
    log = open(tmp / "processes.log", "ab")  # noqa: SIM115 - closed when the processes end
    ui = subprocess.Popen([EXE, "ui", "--port", "0", "--json"], cwd=tmp, env=env,
                          stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                          start_new_session=True)
    procs = [ui]
    try:
        info = json.loads(ui.stdout.readline() or "{}")
        assert info.get("url"), f"fairtrial ui printed no address: {(tmp / 'processes.log').read_text()}"
        procs.append(_start(["run", "slow.toml", "--cpus", "1", "--quiet"], env, tmp, log))
        procs.append(_start(["run", "broken.toml", "--cpus", "1", "--quiet"], env, tmp, log))
        yield {"info": info, "tmp": tmp, "env": env, "base": info["url"].split("/?")[0],
               "procs": procs}
    finally:
        for p in reversed(procs):
            _end(p)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, live):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(live["info"]["url"])  # with the token: a cookie from here on, and no token in the address
    assert "token" not in pg.url
    yield pg
    ctx.close()


def _raw(live, path, host=None, headers=None):
    u = urlsplit(live["base"])
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.putrequest("GET", path, skip_host=True)
    c.putheader("Host", host or u.netloc)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_the_server_refuses_without_token_and_with_a_wrong_host(live):
    token = live["info"]["token"]
    assert _raw(live, "/api/studies")[0] == 401
    assert _raw(live, "/")[0] == 401
    assert _raw(live, f"/api/studies?token={token}")[0] == 200
    status, body = _raw(live, f"/api/studies?token={token}", host="attacker.example:80")
    assert status == 403 and b"DNS-rebinding" in body
    status, _ = _raw(live, "/api/studies", headers={"Authorization": f"Bearer {token}",
                                                    "Origin": "http://attacker.example"})
    assert status == 403
    # raw request lines, not normalised by any client
    for path in ("/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
                 "/api/run/..%2f..%2f/file?name=../../../../etc/passwd"):
        status, body = _raw(live, path, headers={"Authorization": f"Bearer {token}"})
        assert status in (400, 404) and b"root:x:0:0" not in body, (path, status)


def test_study_page_shows_a_stage_go_pending_running_done_without_reload(page, live, shots):
    token = live["info"]["token"]
    wait_for(lambda: _raw(live, f"/api/study/slow?token={token}")[0] == 200, 60,
             "study slow recorded in the workspace")
    page.goto(live["base"] + "/study/slow")
    page.wait_for_selector("td[data-cell]")
    # watch every cell's state from inside the page: a marker that a reload would erase
    page.evaluate("""() => { window.__noReload = true; window.__seen = {};
      setInterval(() => { for (const td of document.querySelectorAll('td[data-cell]')) {
        const s = (window.__seen[td.dataset.cell] ||= []);
        if (s[s.length - 1] !== td.dataset.state) s.push(td.dataset.state); } }, 100); }""")
    page.wait_for_function("""() => Object.values(window.__seen).some(s => s.length >= 2 &&
        s.includes('running') && s.indexOf('pending') < s.indexOf('running'))""", timeout=60_000)
    running = page.wait_for_selector("td[data-cell$='/work'][data-state=running]", timeout=60_000)
    href = running.query_selector("a").get_attribute("href")
    page.screenshot(path=str(shots / "ui-study-running.png"), full_page=True)
    run = page.context.new_page()  # the stage run's page, its log following while it runs
    run.goto(live["base"] + href)
    run.wait_for_function("() => document.getElementById('log').textContent.includes('attempt')",
                          timeout=30_000)
    run.screenshot(path=str(shots / "ui-run-live.png"), full_page=True)
    run.close()
    cell = page.wait_for_function("""() => Object.entries(window.__seen).find(([c, s]) =>
        c.endsWith('/work') && s.indexOf('pending') >= 0 && s.indexOf('pending') < s.indexOf('running')
        && s.indexOf('running') < s.indexOf('done'))?.[0]""", timeout=90_000).json_value()
    assert page.evaluate("() => window.__noReload === true")
    seen = page.evaluate("() => window.__seen")
    assert seen[cell][0] == "pending" and seen[cell][-1] == "done", seen[cell]
    page.wait_for_function("() => [...document.querySelectorAll('td[data-cell]')].every("
                           "td => td.dataset.state === 'done')", timeout=60_000)
    page.screenshot(path=str(shots / "ui-study.png"), full_page=True)
    # filter and sort, on the page, without a request
    page.fill("#f-arm", "bett")
    page.wait_for_function("() => [...document.querySelectorAll('td[data-cell]')].every(td => "
                           "td.dataset.cell.startsWith('better/'))")
    page.fill("#f-arm", "")
    page.select_option("#f-sort", "seed")
    first = page.locator("td[data-cell]").first.get_attribute("data-cell")
    assert first.split("/")[1] == "0"


def test_failed_stage_shows_its_error(page, live, shots):
    token = live["info"]["token"]
    wait_for(lambda: _raw(live, f"/api/study/broken?token={token}")[0] == 200, 60,
             "study broken recorded")
    page.goto(live["base"] + "/study/broken")
    page.wait_for_selector("td[data-state=failed]", timeout=90_000)
    err = page.locator("td[data-state=failed] .err").first.inner_text()
    assert err == "bad batch in shard 3"
    assert "bad batch in shard 3" in page.locator("#details").inner_text()
    page.screenshot(path=str(shots / "ui-study-failed.png"), full_page=True)
    page.locator("td[data-state=failed] a").first.click()
    page.wait_for_selector("#run-error")
    assert page.locator("#run-error").inner_text() == "bad batch in shard 3"
    page.wait_for_function("() => document.getElementById('log').textContent.includes('bad batch in shard 3')")
    page.screenshot(path=str(shots / "ui-run-failed.png"), full_page=True)


def test_studies_and_report_pages_show_the_cli_verdict(page, live, shots):
    tmp, env = live["tmp"], live["env"]
    wait_for(lambda: all(p.poll() is not None for p in live["procs"][1:]), 120,
             "the background runs ended")
    cli = subprocess.Popen([EXE, "report", "slow.toml"], cwd=tmp, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    page.goto(live["base"] + "/report/slow")
    page.wait_for_selector("#headline", timeout=120_000)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    first_line = out.splitlines()[0]
    assert page.locator("#headline").inner_text() == first_line
    assert page.locator("figure img").count() >= 1
    page.screenshot(path=str(shots / "ui-report.png"), full_page=True)
    page.goto(live["base"] + "/")
    page.wait_for_selector("tr[data-study=slow] .v")
    assert page.locator("tr[data-study=slow] .v").inner_text() == first_line
    page.screenshot(path=str(shots / "ui-studies.png"), full_page=True)


def test_compare_page(page, live, shots):
    page.goto(live["base"] + "/compare/slow?a=better&b=base")
    page.wait_for_selector("#items tbody tr")
    assert page.locator("#items tbody tr").count() == 25
    assert "50 items paired over seeds 0, 1" in page.locator("#compare-summary").inner_text()
    page.screenshot(path=str(shots / "ui-compare.png"), full_page=True)
    key = json.loads(_raw(live, f"/api/study/slow?token={live['info']['token']}")[1])
    work = next(k for k, r in key["runs"].items() if r["stage"] == "work")
    page.goto(live["base"] + f"/run/{work}")
    page.wait_for_selector("#manifest")
    assert "model.json" in page.locator("#manifest").inner_text()
    # the OOM back-off: declared micro_batch 8, effective 2, two back-offs listed
    assert page.locator("tr.changed th", has_text="micro_batch").count() == 1
    assert page.locator("text=back-off 2:").count() == 1
    page.screenshot(path=str(shots / "ui-run.png"), full_page=True)
