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


def pytest_configure(config):
    """One torch thread for every test in this process, whatever the machine's core count and
    whichever test module is imported first: the tiny models gain nothing from more threads, an
    oversubscribed OpenMP pool on two shared cores makes them tens of times slower, and a float
    result must not depend on how many threads split a reduction. Stage runs in subprocesses get
    their threads from the engine (OMP_NUM_THREADS and torch.set_num_threads from declared cpus)."""
    import torch

    torch.set_num_threads(1)


def pytest_sessionstart(session):
    """CI sets FAIRTRIAL_CI_REQUIRE=postgres,...: a service CI promises must be there, so its tests
    cannot be skipped in silence (locally they are skipped with a reason when it is missing)."""
    required = {s.strip() for s in os.environ.get("FAIRTRIAL_CI_REQUIRE", "").split(",") if s.strip()}
    if "postgres" in required and not os.environ.get("FAIRTRIAL_TEST_PG_URL"):
        raise pytest.UsageError("FAIRTRIAL_CI_REQUIRE names postgres but FAIRTRIAL_TEST_PG_URL is not "
                                "set: .ci/pg-start did not start a cluster")
    if "ray" in required:
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise pytest.UsageError("FAIRTRIAL_CI_REQUIRE names ray but the ray package is missing: "
                                    "the Ray executor's cluster tests would be skipped")
    if "lm_eval" in required:
        import importlib.util
        if importlib.util.find_spec("lm_eval") is None:
            raise pytest.UsageError("FAIRTRIAL_CI_REQUIRE names lm_eval but it is not installed: the "
                                    "GSM8K extraction's agreement with lm-eval would be skipped")
    if "browser" in required:
        import importlib.util
        import shutil
        if not shutil.which("chromium") or importlib.util.find_spec("playwright") is None:
            raise pytest.UsageError("FAIRTRIAL_CI_REQUIRE names browser but chromium or the playwright "
                                    "package is missing: the dashboard's browser tests would be skipped")


# ------------------------------------------------------------- the record store on both backends
PG_URL = os.environ.get("FAIRTRIAL_TEST_PG_URL")
NO_PG = "FAIRTRIAL_TEST_PG_URL not set (make test starts a throw-away cluster with .ci/pg-start)"


@pytest.fixture
def pg_url():
    """The URL of a new, empty PostgreSQL database on FAIRTRIAL_TEST_PG_URL's server, dropped after
    the test: tests (and concurrent test runs on one cluster) never see each other's rows.
    Skipped with the reason when the variable is not set (CI requires it)."""
    if not PG_URL:
        pytest.skip(NO_PG)
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    name = f"ft_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as c:  # about 0.1 s a database: cheaper than cleaning up shared tables
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:  # FORCE (PostgreSQL 13+): a connection the test left open
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A fresh record store's URL, once on SQLite and once on PostgreSQL (see `pg_url`)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'records.db'}"
