"""The whole CLI path on a PostgreSQL record store (any SQLAlchemy URL works through
FAIRTRIAL_DB_URL). The store's own tests run on both backends in tests/store.

`make test` (and CI) start a throw-away cluster with .ci/pg-start and set FAIRTRIAL_TEST_PG_URL;
by hand, set it to a database's URL on a server where the user may create databases, e.g.
postgresql+psycopg://ft:ft@localhost/fairtrial (needs `pip install 'fairtrial[postgres]'`). Each
test gets a new database on that server (the `pg_url` fixture). Without it these are skipped."""

from __future__ import annotations

import json

from sqlalchemy import create_engine, text


def test_run_status_report_on_postgres(cli, make_study, pg_url):
    cli.env["FAIRTRIAL_DB_URL"] = pg_url
    study = make_study()
    p = cli("run", study, check=0)
    assert "7 run, 0 cached" in p.stdout, p.stdout
    p = cli("run", study, check=0)
    assert "0 run, 7 cached" in p.stdout
    st = json.loads(cli("status", "--json", check=0).stdout)["studies"][0]
    assert st["totals"] == {"done": 7, "total": 7}
    assert not (cli.tmp / "ws" / "fairtrial.db").exists()
    rep = json.loads(cli("report", study, "--json", "--resamples", "500", check=0).stdout)
    assert [c["arm"] for c in rep["comparisons"]] == ["better"], rep
    assert rep["comparisons"][0]["verdict"] == "supported", rep  # the test recipe's +0.5 effect
    # the records are in PostgreSQL: one row per stage run, each run once, nothing left held
    eng = create_engine(pg_url)
    try:
        with eng.connect() as c:
            assert c.execute(text("select count(*), count(distinct key) from stage_runs")).one() \
                == (7, 7)
            assert c.execute(text("select outcome, count(*) from attempts group by outcome")) \
                .all() == [("done", 7)]
            assert c.execute(text("select count(*) from leases")).scalar() == 0
            assert c.execute(text("select count(*) from cells")).scalar() > 0
    finally:
        eng.dispose()
