"""Engine benchmarks (issue: core). Prints what it measured next to a reference measured in the
same run, as a ratio.

1. Scheduling and recording ~1,000 trivial stage runs (`fairtrial run`, internal `_test` recipe)
   vs the same stage functions called in a plain loop without the engine. Target: <= 20 s wall.
2. `fairtrial status --json` on a workspace with 10,000 stage-run records, vs a bare SQLite
   `select *` of the same records. Target: <= 0.5 s.
3. Re-running the fully cached study of (1): wall time and stage functions called.
   Target: <= 2 s, zero calls.

usage: python bench/bench_engine.py [--arms 50] [--seeds 10] [--records 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "fairtrial")


def study_file(folder: Path, arms: int, seeds: int) -> Path:
    p = folder / "bench.toml"
    p.write_text(f"""
name = "bench"
question = "How fast is the engine?"
recipe = "_test"
replicates = {list(range(seeds))}
control = "size=1"
[endpoint]
metric = "score"
[params]
n_items = 5
[grid]
size = {list(range(1, arms + 1))}
""")
    return p


def run(args, env, **kw):
    t0 = time.perf_counter()
    p = subprocess.run([EXE, *args], env=env, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{args} failed:\n{p.stdout}\n{p.stderr}")
    return dt, p


def direct_loop(arms: int, seeds: int, folder: Path) -> tuple[float, int]:
    """The reference: the same stage functions, called in one process with no engine."""
    import logging

    from fairtrial.recipes.enginetest import RECIPE, TestParams

    class Ctx:
        def __init__(self, params, seed, out, inputs):
            self.params, self.seed, self.out, self.inputs = params, seed, out, inputs
            self.checkpoint_dir = out / "ckpt"
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self.log = logging.getLogger("bench")
            self.device = "cpu"
            self.key = "direct"

        def progress(self, *a, **k):
            pass

        def heartbeat(self):
            pass

    t0 = time.perf_counter()
    n = 0
    for a in range(1, arms + 1):
        params = TestParams(size=a, n_items=5).model_dump()
        src = folder / f"src{a}"
        src.mkdir(parents=True)
        RECIPE.stage("source").fn(Ctx(params, None, src, {}))
        n += 1
        for s in range(seeds):
            w = folder / f"w{a}-{s}"
            w.mkdir()
            RECIPE.stage("work").fn(Ctx(params, s, w, {"source": src}))
            sc = folder / f"s{a}-{s}"
            sc.mkdir()
            RECIPE.stage("score").fn(Ctx(params, s, sc, {"work": w}))
            n += 2
    return time.perf_counter() - t0, n


def make_records(ws: Path, n: int) -> float:
    """A workspace with n done stage-run records (and artifacts) in one study."""
    from fairtrial.store import artifacts
    from fairtrial.store.db import Store
    from fairtrial.workspace import Workspace

    w = Workspace(ws).ensure()
    store = Store(w.db_url)
    recs, cells = [], []
    t0 = time.perf_counter()
    for i in range(n):
        key = f"{i:064x}"
        recs.append({"key": key, "recipe": "_test", "stage": ["source", "work", "score"][i % 3],
                     "version": "1", "params": {"i": i}, "seed": i % 10, "needs": {},
                     "input_files": {}})
        cells.append((f"arm{i // 30}", (i // 3) % 10, ["source", "work", "score"][i % 3], key))
        out = artifacts.new_tmp(w, key) / "out"
        (out / "x.json").write_text(json.dumps({"i": i}))
        artifacts.commit(w, key, out, {"recipe": "_test"})
    store.upsert_study("many", "many.toml", "_test", "0", {})
    for i in range(0, n, 500):
        store.ensure_runs(recs[i:i + 500], "many")
    store.set_cells("many", cells)
    with store.engine.begin() as c:
        from sqlalchemy import update

        from fairtrial.store.db import stage_runs

        c.execute(update(stage_runs).values(state="done", duration_s=0.01))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--records", type=int, default=10_000)
    a = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        env = dict(os.environ, FAIRTRIAL_WORKSPACE=str(d / "ws"), FAIRTRIAL_TEST_CALLS=str(d / "calls"))
        study = study_file(d, a.arms, a.seeds)

        ref_s, ref_n = direct_loop(a.arms, a.seeds, d / "direct")
        wall, p = run(["run", str(study), "--quiet"], env)
        n_calls = sum(1 for line in open(d / "calls") if line.split()[2] == "end")
        print(f"[1] {n_calls} stage runs scheduled and recorded: {wall:.2f} s wall "
              f"({n_calls / wall:.0f} runs/s); target <= 20 s")
        print(f"    reference: the same {ref_n} stage functions in a plain loop: {ref_s:.2f} s; "
              f"engine / plain loop = {wall / ref_s:.1f}x")

        before = n_calls
        wall2, p = run(["run", str(study), "--quiet"], env)
        after = sum(1 for line in open(d / "calls") if line.split()[2] == "end")
        print(f"[3] fully cached re-run: {wall2:.2f} s wall, {after - before} stage functions "
              f"called; target <= 2 s, 0 calls")
        print(f"    reference: the first run {wall:.2f} s; cached / first = {wall2 / wall:.3f}")

        ws2 = d / "ws2"
        build = make_records(ws2, a.records)
        env2 = dict(env, FAIRTRIAL_WORKSPACE=str(ws2))
        times = []
        for _ in range(3):
            t, p = run(["status", "many", "--json"], env2)
            times.append(t)
        got = json.loads(p.stdout)["studies"][0]["totals"]
        t0 = time.perf_counter()
        for _ in range(3):
            con = sqlite3.connect(ws2 / "fairtrial.db")
            rows = con.execute("select * from stage_runs").fetchall()
            con.close()
        raw = (time.perf_counter() - t0) / 3
        t0 = time.perf_counter()
        for _ in range(3):
            run(["version"], env2)
        startup = (time.perf_counter() - t0) / 3
        print(f"[2] status --json on {len(rows)} records (built in {build:.1f} s): best "
              f"{min(times):.2f} s wall of 3 (totals {got}); target <= 0.5 s")
        print(f"    reference: bare sqlite select of the records {raw:.3f} s; `fairtrial version` "
              f"(interpreter + CLI start-up) {startup:.2f} s; status / start-up = "
              f"{min(times) / startup:.1f}x")
    print(f"load at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
