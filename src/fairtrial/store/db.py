"""Records: stage runs, their attempts, which study cell uses which run, and studies.

SQLite in WAL mode by default (many worker processes write heartbeats while readers look), any
SQLAlchemy URL by setting. One row per stage-run key: attempts are counted on that row and logged
in `attempts`, so a resumed or retried run never duplicates its record.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

from sqlalchemy import (JSON, Column, Float, Integer, MetaData, String, Table, Text, create_engine,
                        delete, event, insert, select, text, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, IntegrityError

metadata = MetaData()

IMPORT_STAGE = "import"
"""The pseudo-stage of item scores brought in by `fairtrial import`."""

stage_runs = Table(
    "stage_runs", metadata,
    Column("key", String(64), primary_key=True),
    Column("recipe", String(64), nullable=False),
    Column("stage", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("seed", Integer),
    Column("needs", JSON, nullable=False),
    Column("input_files", JSON, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    # pending | running | done | failed | interrupted  (what the engine last knew; status derives
    # the truth from artifacts and process liveness)
    Column("study", String(200)),       # the study that first produced it
    Column("attempts", Integer, nullable=False, default=0),
    Column("pid", Integer),
    Column("host", String(200)),
    Column("started_at", Float),
    Column("heartbeat_at", Float),
    Column("ended_at", Float),
    Column("duration_s", Float),
    Column("progress_done", Float),
    Column("progress_total", Float),
    Column("progress_unit", String(32)),
    Column("rate", Float),
    Column("message", Text),
    Column("error", Text),
    Column("effective_params", JSON),
    Column("adjustments", JSON),        # OOM back-offs applied, in order
    Column("summary", JSON),
    Column("created_at", Float, nullable=False),
)

attempts = Table(
    "attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("study", String(200)),
    Column("pid", Integer),
    Column("host", String(200)),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("outcome", String(16)),      # done | failed | oom | transient | lost | interrupted
    Column("error", Text),
)

cells = Table(
    "cells", metadata,
    Column("study", String(200), primary_key=True),
    Column("arm", String(200), primary_key=True),
    Column("replicate", Integer, primary_key=True),
    Column("stage", String(64), primary_key=True),
    Column("key", String(64), nullable=False, index=True),
)

leases = Table(
    "leases", metadata,
    # One row per stage run being executed: whoever holds it (a supervisor and the worker it gave
    # the run to) is the only one that runs the key, writes its attempt records and touches its
    # checkpoint. A row whose holders are dead, or whose renewal is older than the stale limit,
    # can be taken over by a compare-and-swap on `token`. Works the same on SQLite and PostgreSQL.
    Column("key", String(64), primary_key=True),
    Column("token", String(64), nullable=False),
    Column("study", String(200)),
    Column("host", String(200)),
    Column("pid", Integer),             # the supervisor
    Column("pid_started", Float),       # its process start time (guards against pid reuse)
    Column("worker_pid", Integer),      # the worker that runs the key, once there is one
    Column("worker_started", Float),
    Column("acquired_at", Float, nullable=False),
    Column("renewed_at", Float, nullable=False),
)

studies = Table(
    "studies", metadata,
    Column("name", String(200), primary_key=True),
    Column("path", Text),
    Column("recipe", String(64)),
    Column("spec_digest", String(64)),
    Column("spec", JSON),
    Column("updated_at", Float),
)


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Store:
    def __init__(self, url: str):
        self.url = url
        kw: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30}
        self.engine: Engine = create_engine(url, **kw)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if self.engine.dialect.name == "postgresql":
            # two supervisors starting on a fresh database would both create the tables and one
            # fail on PostgreSQL's catalog; a transaction-scoped advisory lock orders them
            with self.engine.begin() as c:
                c.execute(text("SELECT pg_advisory_xact_lock(7345601)"))
                metadata.create_all(c)
        else:
            for attempt in range(10):
                try:
                    metadata.create_all(self.engine)
                    break
                except DatabaseError as e:
                    # two processes creating the tables of a fresh SQLite file at once: one finds
                    # "table ... already exists" between its check and its CREATE; look again
                    if "already exists" not in str(e) or attempt == 9:
                        raise
                    time.sleep(0.05)

    def dispose(self) -> None:
        self.engine.dispose()

    # ---- studies and cells ----
    def upsert_study(self, name: str, path: str, recipe: str, digest: str, spec: dict) -> None:
        with self.engine.begin() as c:
            row = {"path": path, "recipe": recipe, "spec_digest": digest,
                   "spec": json.loads(json.dumps(spec, default=str)), "updated_at": time.time()}
            if c.execute(select(studies.c.name).where(studies.c.name == name)).first():
                c.execute(update(studies).where(studies.c.name == name).values(**row))
            else:
                c.execute(insert(studies).values(name=name, **row))

    def set_cells(self, study: str, rows: Iterable[tuple[str, int, str, str]],
                  stage: str | None = None) -> None:
        """Replace the study's (arm, replicate, stage) -> key map (the plan may have changed).
        Planned cells and imported ones (stage IMPORT_STAGE) are replaced separately: pass
        `stage=IMPORT_STAGE` to replace imports."""
        rows = [{"study": study, "arm": a, "replicate": r, "stage": s, "key": k}
                for a, r, s, k in rows]
        with self.engine.begin() as c:
            if stage == IMPORT_STAGE:
                arms = {r["arm"] for r in rows}
                c.execute(delete(cells).where(cells.c.study == study, cells.c.stage == IMPORT_STAGE,
                                              cells.c.arm.in_(arms)))
            else:
                c.execute(delete(cells).where(cells.c.study == study, cells.c.stage != IMPORT_STAGE))
            if rows:
                c.execute(insert(cells), rows)

    def get_cells(self, study: str) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(select(cells.c.arm, cells.c.replicate, cells.c.stage, cells.c.key)
                             .where(cells.c.study == study)).fetchall()
        return [{"study": study, "arm": a, "replicate": r, "stage": s, "key": k}
                for a, r, s, k in rows]

    def cells_of_key(self, key: str) -> list[dict]:
        """The (study, arm, replicate, stage) cells one stage run serves, by the cells table's key
        index (reading every study's cells costs ~0.1 s per 10,000)."""
        with self.engine.connect() as c:
            rows = c.execute(select(cells.c.study, cells.c.arm, cells.c.replicate, cells.c.stage)
                             .where(cells.c.key == key).order_by(cells.c.study, cells.c.arm,
                                                                 cells.c.replicate)).fetchall()
        return [{"study": st, "arm": a, "replicate": rep, "stage": sg, "key": key}
                for st, a, rep, sg in rows]

    def get_study(self, name: str) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(select(studies).where(studies.c.name == name)).first()
            return dict(r._mapping) if r else None

    def list_studies(self) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(studies).order_by(studies.c.name))]

    # ---- stage runs ----
    def ensure_runs(self, records: Iterable[dict], study: str) -> None:
        """Insert a pending row for each planned run that has none (idempotent)."""
        records = list(records)
        with self.engine.begin() as c:
            have = {r[0] for r in c.execute(select(stage_runs.c.key).where(
                stage_runs.c.key.in_([r["key"] for r in records])))} if len(records) < 900 else \
                {r[0] for r in c.execute(select(stage_runs.c.key))}
            new = [dict(r, state="pending", attempts=0, created_at=time.time(), study=study)
                   for r in records if r["key"] not in have]
            if new and self.engine.dialect.name in ("sqlite", "postgresql"):
                # a concurrent study may have inserted some since the read: skip those rows only
                # (a plain INSERT failed whole on the first duplicate and lost the others' rows)
                if self.engine.dialect.name == "sqlite":
                    from sqlalchemy.dialects.sqlite import insert as insert_or_skip
                else:
                    from sqlalchemy.dialects.postgresql import insert as insert_or_skip
                c.execute(insert_or_skip(stage_runs).on_conflict_do_nothing(), new)
            elif new:
                try:
                    c.execute(insert(stage_runs), new)
                except IntegrityError:
                    pass  # a concurrent study inserted some: the rows exist either way

    def get_run(self, key: str) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(select(stage_runs).where(stage_runs.c.key == key)).first()
            return dict(r._mapping) if r else None

    def get_runs(self, keys: Iterable[str] | None = None) -> dict[str, dict]:
        with self.engine.connect() as c:
            q = select(stage_runs)
            keys = list(keys) if keys is not None else None
            if keys is not None and len(keys) < 900:
                q = q.where(stage_runs.c.key.in_(keys))
            rows = {r.key: dict(r._mapping) for r in c.execute(q)}
        if keys is not None:
            ks = set(keys)
            rows = {k: v for k, v in rows.items() if k in ks}
        return rows

    from fairtrial.store.fastread import STATUS_COLUMNS

    def status_rows(self) -> dict[str, dict]:
        """The columns status needs, for every stage run, without ORM type processing (status
        on a workspace of 10,000 runs must stay well under a second)."""
        cols = ", ".join(self.STATUS_COLUMNS)
        with self.engine.connect() as c:
            rows = c.exec_driver_sql(f"SELECT {cols} FROM stage_runs").fetchall()
        out = {}
        for r in rows:
            d = dict(zip(self.STATUS_COLUMNS, r))
            adj = d["adjustments"]
            if isinstance(adj, str):  # SQLite gives the JSON text, PostgreSQL the decoded value
                adj = json.loads(adj)
            d["adjustments"] = adj or None  # no back-off reads as None on both backends
            out[d["key"]] = d
        return out

    def update_run(self, key: str, **values: Any) -> None:
        with self.engine.begin() as c:
            c.execute(update(stage_runs).where(stage_runs.c.key == key).values(**values))

    def start_attempt(self, key: str, study: str, pid: int, host: str, **values: Any) -> int:
        now = time.time()
        with self.engine.begin() as c:
            n = c.execute(select(stage_runs.c.attempts).where(stage_runs.c.key == key)).scalar_one()
            n = (n or 0) + 1
            c.execute(update(stage_runs).where(stage_runs.c.key == key).values(
                state="running", attempts=n, pid=pid, host=host, started_at=now, heartbeat_at=now,
                ended_at=None, error=None, progress_done=None, progress_total=None, rate=None,
                message=None, **values))
            c.execute(insert(attempts).values(key=key, attempt=n, study=study, pid=pid, host=host,
                                              started_at=now))
        return n

    def end_attempt(self, key: str, outcome: str, error: str | None = None, **run_values) -> None:
        """Close the key's open attempt (one that has no end yet: a closed attempt is never
        rewritten) and update the stage run's row."""
        now = time.time()
        with self.engine.begin() as c:
            last = c.execute(select(attempts.c.id).where(attempts.c.key == key,
                                                         attempts.c.ended_at.is_(None))
                             .order_by(attempts.c.id.desc()).limit(1)).scalar()
            if last is not None:
                c.execute(update(attempts).where(attempts.c.id == last).values(
                    ended_at=now, outcome=outcome, error=error))
            c.execute(update(stage_runs).where(stage_runs.c.key == key).values(
                ended_at=now, error=error, **run_values))

    # ---- leases: who runs a stage run now ----
    def try_lease(self, key: str, token: str, *, study: str, host: str, pid: int,
                  pid_started: float | None, holder_dead) -> dict | None:
        """Take the lease on `key` for `token`. Returns None when taken (or already ours), else the
        row of the live holder. `holder_dead(row) -> bool` says whether a holder may be replaced."""
        now = time.time()
        mine = {"token": token, "study": study, "host": host, "pid": pid,
                "pid_started": pid_started, "worker_pid": None, "worker_started": None,
                "acquired_at": now, "renewed_at": now}
        for _ in range(3):
            try:
                with self.engine.begin() as c:
                    row = c.execute(select(leases).where(leases.c.key == key)).first()
                    if row is None:
                        c.execute(insert(leases).values(key=key, **mine))
                        return None
                    held = dict(row._mapping)
                    if held["token"] == token:
                        return None
                    if not holder_dead(held):
                        return held
                    # compare-and-swap: of several supervisors that saw the same dead holder,
                    # only one wins
                    res = c.execute(update(leases).where(
                        leases.c.key == key, leases.c.token == held["token"]).values(**mine))
                    return None if res.rowcount == 1 else held
            except IntegrityError:  # another supervisor inserted it a moment ago: look again
                continue
        return {"key": key, "token": "?", "study": None}

    def set_lease_worker(self, key: str, token: str, worker_pid: int,
                         worker_started: float | None) -> None:
        with self.engine.begin() as c:
            c.execute(update(leases).where(leases.c.key == key, leases.c.token == token)
                      .values(worker_pid=worker_pid, worker_started=worker_started,
                              renewed_at=time.time()))

    def get_lease(self, key: str) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(select(leases).where(leases.c.key == key)).first()
            return dict(r._mapping) if r else None

    def set_run_process(self, key: str, token: str | None, pid: int, host: str,
                        pid_started: float | None) -> None:
        """The process that runs `key`'s open attempt says where it is (a local worker or a Ray
        task on any node): the run's row, its open attempt and the lease (as its worker)."""
        with self.engine.begin() as c:
            c.execute(update(stage_runs).where(stage_runs.c.key == key)
                      .values(pid=pid, host=host, heartbeat_at=time.time()))
            last = c.execute(select(attempts.c.id).where(attempts.c.key == key,
                                                         attempts.c.ended_at.is_(None))
                             .order_by(attempts.c.id.desc()).limit(1)).scalar()
            if last is not None:
                c.execute(update(attempts).where(attempts.c.id == last).values(pid=pid, host=host))
            if token:
                # a pid means something only on the lease holder's host (a Ray task on another
                # node is watched through the lease's renewal instead)
                c.execute(update(leases).where(leases.c.key == key, leases.c.token == token,
                                               leases.c.host == host)
                          .values(worker_pid=pid, worker_started=pid_started,
                                  renewed_at=time.time()))

    def renew_leases(self, token: str) -> None:
        with self.engine.begin() as c:
            c.execute(update(leases).where(leases.c.token == token).values(renewed_at=time.time()))

    def release_lease(self, key: str | None, token: str) -> None:
        """Give up one lease of `token` (or, with key None, all of them)."""
        with self.engine.begin() as c:
            q = delete(leases).where(leases.c.token == token)
            if key is not None:
                q = q.where(leases.c.key == key)
            c.execute(q)

    def get_leases(self) -> dict[str, dict]:
        with self.engine.connect() as c:
            return {r.key: dict(r._mapping) for r in c.execute(select(leases))}

    def get_attempts(self, key: str | None = None) -> list[dict]:
        with self.engine.connect() as c:
            q = select(attempts).order_by(attempts.c.id)
            if key:
                q = q.where(attempts.c.key == key)
            return [dict(r._mapping) for r in c.execute(q)]

    def durations(self, recipe: str) -> dict[str, list[float]]:
        """stage -> durations of finished runs (for ETAs of pending runs)."""
        out: dict[str, list[float]] = {}
        with self.engine.connect() as c:
            q = select(stage_runs.c.stage, stage_runs.c.duration_s).where(
                stage_runs.c.recipe == recipe, stage_runs.c.duration_s.is_not(None))
            for stage, d in c.execute(q):
                out.setdefault(stage, []).append(d)
        return out
