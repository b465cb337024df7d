"""Shared fixtures: study files for the engine test recipe and a CLI runner that calls the
installed `fairtrial` the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()

BASE_STUDY = """\
question = "Does the effect help?"
recipe = "_test"
replicates = [0, 1]
control = "base"

[endpoint]
metric = "score"

[decision]
min_effect = 0.1
effect = "absolute"

[params]
{params}

[[arms]]
name = "base"
{base}

[[arms]]
name = "better"
effect = 0.5
{better}
"""


def study_text(params: str = "", base: str = "", better: str = "", extra: str = "") -> str:
    return BASE_STUDY.format(params=params, base=base, better=better) + extra


@pytest.fixture
def make_study(tmp_path):
    def make(text: str | None = None, name: str = "study.toml", **kw) -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text) if text is not None else study_text(**kw))
        return p
    return make


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run `fairtrial ...` in a subprocess inside tmp_path with its own workspace."""
    env = dict(os.environ)
    env["FAIRTRIAL_WORKSPACE"] = str(tmp_path / "ws")
    env["FAIRTRIAL_TEST_CALLS"] = str(tmp_path / "calls.txt")
    env["FAIRTRIAL_CRASH_DIR"] = str(tmp_path)
    env.pop("FAIRTRIAL_DB_URL", None)

    def run(*args, check=None, timeout=120, **kw) -> subprocess.CompletedProcess:
        exe = Path(sys.executable).parent / "fairtrial"
        p = subprocess.run([str(exe), *map(str, args)], cwd=tmp_path, env=env, text=True,
                           capture_output=True, timeout=timeout, **kw)
        if check is not None:
            assert p.returncode == check, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    run.env = env
    run.tmp = tmp_path
    return run


def db_rows(cli, sql: str):
    """Rows of a query on the `cli` fixture's workspace database."""
    import sqlite3

    con = sqlite3.connect(cli.tmp / "ws" / "fairtrial.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def calls(tmp_path: Path) -> list[tuple[str, str, str]]:
    f = tmp_path / "calls.txt"
    if not f.exists():
        return []
    return [tuple(line.split()) for line in f.read_text().splitlines() if line.strip()]


def pytest_sessionstart(session):
    """CI sets FAIRTRIAL_CI_REQUIRE=postgres,...: a service CI promises must be there, so its tests
    cannot be skipped in silence (locally they are skipped with a reason when it is missing)."""
    required = {s.strip() for s in os.environ.get("FAIRTRIAL_CI_REQUIRE", "").split(",") if s.strip()}
    if "postgres" in required and not os.environ.get("FAIRTRIAL_TEST_PG_URL"):
        raise pytest.UsageError("FAIRTRIAL_CI_REQUIRE names postgres but FAIRTRIAL_TEST_PG_URL is not "
                                "set: .ci/pg-start did not start a cluster")
