"""A full disk (issue 15): `fairtrial run` on a full workspace ends with a one-line environment
error (exit 74), never an internal error (70); once space is freed, `run` resumes and finishes.
The test mounts a small tmpfs, so it runs as root where mount works and is skipped otherwise."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full disk); run as root to include it")
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(disk: Path, keep_kb: int) -> Path:
    """Fill the disk but `keep_kb` KiB."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    free = shutil.disk_usage(disk).free // 1024
    with open(filler, "wb") as f:
        left = max(0, free - keep_kb)
        while left > 0:
            n = min(left, 256)
            try:
                f.write(b"\0" * n * 1024)
                f.flush()
            except OSError:
                break
            left -= n
    return filler


def no_bug(p: subprocess.CompletedProcess) -> None:
    out = p.stdout + p.stderr
    assert p.returncode != 70 and "internal error" not in out, out
    assert "Traceback" not in out, out


@pytest.mark.parametrize("keep_kb", [0, 60, 250])
def test_run_on_a_full_disk_is_an_environment_error_and_resumes(cli, make_study, tiny_disk, keep_kb):
    study = make_study(params="n_items = 20")
    ws = tiny_disk / "ws"
    cli("check", study, "-w", ws, check=0)  # the workspace and its record store exist
    filler = fill(tiny_disk, keep_kb)
    p = cli("run", study, "-w", ws, timeout=180)
    no_bug(p)
    assert p.returncode in (1, 74), p.stdout + p.stderr  # 1: a stage run failed on ENOSPC
    if p.returncode == 74:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: disk full"), p.stderr
    else:
        assert re.search(r"No space left|disk full", p.stdout), p.stdout
    # status still answers, and nothing is left `running`
    st = cli("status", "--json", "-w", ws)
    no_bug(st)
    if st.returncode == 0:
        for s in json.loads(st.stdout)["studies"]:
            assert not [r for r in s["runs"].values() if r["state"] == "running"]
    filler.unlink()
    out = json.loads(cli("run", study, "-w", ws, "--json", check=0, timeout=180).stdout)
    assert out["ok"] and not out["failed"]


def test_a_full_crash_folder_does_not_break_the_crash_handler(cli, tiny_disk):
    fill(tiny_disk, 0)
    cli.env["FAIRTRIAL_CRASH_DIR"] = str(tiny_disk)
    cli.env["FAIRTRIAL_TEST_RAISE"] = "1"
    p = cli("version")
    assert p.returncode == 70, p.stderr
    assert "deliberate internal error" in p.stderr
    log = re.search(r"are in (\S+\.log)", p.stderr)
    assert log, p.stderr  # written to the temp folder instead
    assert not log.group(1).startswith(str(tiny_disk))
    assert "RuntimeError: deliberate internal error" in Path(log.group(1)).read_text()
