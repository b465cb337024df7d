"""The record store on PostgreSQL (any SQLAlchemy URL works through FAIRTRIAL_DB_URL).

`make test` (and CI) start a throw-away cluster with .ci/pg-start and set FAIRTRIAL_TEST_PG_URL;
by hand, set it to an empty database's URL, e.g. postgresql+psycopg://ft:ft@localhost/fairtrial
(needs `pip install 'fairtrial[postgres]'`). Without it these tests are skipped."""

from __future__ import annotations

import json
import os

import pytest

PG = os.environ.get("FAIRTRIAL_TEST_PG_URL")


@pytest.mark.skipif(not PG, reason="FAIRTRIAL_TEST_PG_URL not set")
def test_run_status_report_on_postgres(cli, make_study):
    from sqlalchemy import create_engine, text

    with create_engine(PG).begin() as c:  # a clean slate
        for t in ("stage_runs", "attempts", "cells", "studies", "leases"):
            c.execute(text(f"DROP TABLE IF EXISTS {t}"))
    cli.env["FAIRTRIAL_DB_URL"] = PG
    study = make_study()
    cli("run", study, check=0)
    p = cli("run", study, check=0)
    assert "0 run, 7 cached" in p.stdout
    st = json.loads(cli("status", "--json", check=0).stdout)["studies"][0]
    assert st["totals"] == {"done": 7, "total": 7}
    assert not (cli.tmp / "ws" / "fairtrial.db").exists()
    rep = json.loads(cli("report", study, "--json", "--resamples", "500", check=0).stdout)
    assert rep
