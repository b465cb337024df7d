"""`fairtrial ui` on the command line: the address it prints, what it says when listening on every
interface, and clear one-line errors for a busy port or a foreign address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.web.conftest import wait_for

EXE = str(Path(sys.executable).parent / "fairtrial")


def _ui(tmp_path, *args):
    env = dict(os.environ, FAIRTRIAL_WORKSPACE=str(tmp_path / "ws"))
    env.pop("FAIRTRIAL_DB_URL", None)
    return subprocess.Popen([EXE, "ui", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def test_all_interfaces_requires_the_token_and_says_so(tmp_path):
    p = _ui(tmp_path, "--host", "0.0.0.0", "--port", "0")
    try:
        lines = []
        wait_for(lambda: lines.append(p.stdout.readline()) or "open http" in lines[-1], 30,
                 "the address printed")
        text = "".join(lines)
        assert "listening on every interface" in text and "token is required" in text
        url = lines[-1].split()[-1]
        assert "?token=" in url and len(url.split("token=")[1]) >= 24
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(20)


def test_a_busy_port_is_a_clear_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        p = _ui(tmp_path, "--port", str(port))
        _, err = p.communicate(timeout=60)
    finally:
        s.close()
    assert p.returncode == 2
    want = f"error: --port {port}: the port is in use; give another (--port 0 picks a free one)"
    assert err.strip().splitlines() == [want]
