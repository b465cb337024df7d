"""Ray executor benchmark (issue 13). Prints what it measured next to the local executor measured in
the same run, as a ratio.

1. Scheduling overhead per stage run: ~1,000 trivial stage runs of the internal `_test` recipe
   (`fairtrial run`, a fresh workspace each) with `--executor ray` vs the local executor.
2. Time from `fairtrial run` to the first stage function running, on an existing cluster (the
   first `start` line the stage functions write to $FAIRTRIAL_TEST_CALLS), vs the local executor.

With no --address it starts a local Ray head (`ray start --head`, --cpus CPUs, no dashboard) for the
run and stops it at the end; with --address it uses that cluster (and leaves it running).

usage: python bench/bench_ray.py [--arms 50] [--seeds 10] [--cpus 2] [--address HOST:PORT]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import study_file  # noqa: E402 - the same study as the engine benchmark

EXE = str(Path(sys.executable).parent / "fairtrial")
RAY = str(Path(sys.executable).parent / "ray")


def timed_run(args: list[str], env: dict, calls: Path) -> tuple[float, float]:
    """(wall seconds of the whole run, seconds until the first stage function started)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([EXE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    first = None
    while p.poll() is None:
        if first is None and calls.exists() and calls.stat().st_size > 0:
            first = time.perf_counter() - t0
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{args} failed:\n{out}\n{err}")
    return wall, first if first is not None else wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--address")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    study = study_file(tmp, a.arms, a.seeds)
    n = a.arms + 2 * a.arms * a.seeds  # source per arm, work and score per arm and seed
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    address, started = a.address, False
    try:
        if not address:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            subprocess.run([RAY, "start", "--head", "--port", str(port), "--node-ip-address",
                            "127.0.0.1", "--num-cpus", str(a.cpus), "--include-dashboard=false",
                            "--disable-usage-stats", "--object-store-memory", str(80 * 10**6),
                            "--temp-dir", str(tmp / "ray")],
                           env=env, check=True, capture_output=True, timeout=300)
            address, started = f"127.0.0.1:{port}", True
        res = {}
        for name, extra in (("local", ["--cpus", str(a.cpus)]),
                            ("ray", ["--executor", "ray", "--address", address])):
            e = dict(env, FAIRTRIAL_WORKSPACE=str(tmp / f"ws-{name}"),
                     FAIRTRIAL_TEST_CALLS=str(tmp / f"calls-{name}.txt"))
            res[name] = timed_run(["run", str(study), "--quiet", *extra], e,
                                  tmp / f"calls-{name}.txt")
        lw, lf = res["local"]
        rw, rf = res["ray"]
        print(f"{n} trivial stage runs, {a.cpus} CPU slots")
        # per stage run: the wall time after the first stage function started (start-up excluded)
        lp, rp = (lw - lf) / n, (rw - rf) / n
        print(f"  local executor: {lw:7.2f} s wall, {1000 * lp:6.1f} ms per stage run after start-up")
        print(f"  ray executor:   {rw:7.2f} s wall, {1000 * rp:6.1f} ms per stage run after start-up")
        print(f"  ratio ray/local per stage run: {rp / lp:.2f}x (whole runs: {rw / lw:.2f}x)")
        print("time from `fairtrial run` to the first stage function running")
        print(f"  local executor: {lf:6.2f} s")
        print(f"  ray executor:   {rf:6.2f} s (existing cluster at {address}); ratio {rf / lf:.2f}x")
    finally:
        if started:
            subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
