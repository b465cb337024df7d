"""One local Ray cluster for the whole session: a head (`ray start --head` on 127.0.0.1, 2 CPUs, no
dashboard, usage stats off, a capped object store) plus a second node, so tasks cross a node
boundary. Stopped at session end, also when tests fail. Skipped (with the reason) only when Ray is
not installed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

RAY_BIN = Path(sys.executable).parent / "ray"
OBJECT_STORE = str(80 * 10**6)  # Ray's floor is 75 MB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster():
    pytest.importorskip("ray", reason="ray is not installed (pip install 'fairtrial[ray]')")
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="ft-ray-"))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats",
              "--object-store-memory", OBJECT_STORE]

    def ray(*args, check=True):
        return subprocess.run([str(RAY_BIN), *args], env=env, capture_output=True, text=True,
                              timeout=180, check=check)

    head = None
    try:
        head = subprocess.Popen([str(RAY_BIN), "start", "--head", "--port", str(port),
                                 "--num-cpus", "2", "--include-dashboard=false",
                                 "--temp-dir", str(tmp), *common], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # the second node joins as soon as the head's GCS answers, while the head still starts
        deadline = time.time() + 120
        while time.time() < deadline and head.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        second = subprocess.Popen([str(RAY_BIN), "start", "--address", f"127.0.0.1:{port}",
                                   "--num-cpus", "2", *common], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, p in (("head", head), ("second node", second)):
            out, _ = p.communicate(timeout=180)
            if p.returncode != 0:
                raise RuntimeError(f"ray start ({name}) failed:\n{out[-3000:]}")
        yield {"address": f"127.0.0.1:{port}", "env": env}
    finally:
        ray("stop", "--force", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
