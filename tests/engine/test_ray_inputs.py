"""Bad input for the Ray executor, without a cluster: one-line refusals, nothing started."""

from __future__ import annotations

import socket

import pytest

from fairtrial.engine.ray_executor import _probe, _reachable, cluster_problems
from fairtrial.engine.task import Resources
from fairtrial.errors import Refused

GB = 2**30


def node(ip: str, cpus: float = 2, gpus: float = 0, mem_gb: float = 8) -> dict:
    return {"NodeManagerAddress": ip, "Alive": True,
            "Resources": {"CPU": cpus, "GPU": gpus, "memory": mem_gb * GB}}


def test_nodes_on_two_hosts_with_sqlite_are_refused_naming_the_setting():
    nodes = [node("10.0.0.1"), node("10.0.0.2")]
    msg = cluster_problems(nodes, "sqlite:////ws/fairtrial.db", [], "10.0.0.1:6379")
    assert "FAIRTRIAL_DB_URL" in msg and "2 hosts" in msg and "\n" not in msg
    assert cluster_problems(nodes, "postgresql+psycopg://db/ft", [], "x") is None
    # two nodes on one host (a local cluster) may share a SQLite file
    assert cluster_problems([node("10.0.0.1"), node("10.0.0.1")], "sqlite:///x", [], "x") is None


def test_resources_no_node_has_name_the_stage_and_what_it_asked():
    nodes = [node("h", cpus=4, gpus=1, mem_gb=16), node("h", cpus=8, gpus=0, mem_gb=64)]
    ok = [("train", Resources(cpus=4, gpus=1, memory_gb=8)), ("eval", Resources(cpus=8))]
    assert cluster_problems(nodes, "sqlite:///x", ok, "a") is None
    msg = cluster_problems(nodes, "sqlite:///x", [("train", Resources(cpus=8, gpus=1))], "a")
    assert msg.startswith("stage train asks for 8 CPUs, 1 GPUs") and "largest node" in msg
    msg = cluster_problems(nodes, "sqlite:///x", [("big", Resources(memory_gb=100))], "a")
    assert "stage big" in msg and "100 GB" in msg


def test_unreachable_address_is_found_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    assert _reachable(f"127.0.0.1:{port}")
    assert "HOST:PORT" in _reachable("nonsense")


def test_unreachable_address_on_the_cli_is_one_line_and_starts_nothing(cli, make_study):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'fairtrial[ray]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = cli("run", make_study(), "--executor", "ray", "--address", f"127.0.0.1:{port}", check=3)
    err = (p.stderr + p.stdout).strip().splitlines()
    assert len(err) == 1 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err[0]
    assert not (cli.tmp / "calls.txt").exists()


def test_unknown_executor_is_refused(cli, make_study):
    p = cli("run", make_study(), "--executor", "slurm", check=2)
    assert 'unknown executor "slurm"; known: local, ray' in p.stderr + p.stdout


def test_ray_too_old_is_refused(monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fairtrial[ray]')")
    from fairtrial.engine import ray_executor

    monkeypatch.setattr(ray, "__version__", "2.3.1")
    with pytest.raises(Refused, match=r"^Ray 2.3.1 is too old for the Ray executor; it needs Ray >= 2.9"):
        ray_executor.import_ray()


def test_the_probe_fails_where_the_workspace_is_not_shared(tmp_path):
    # what a node that mounts another folder at the workspace's path sees: no supervisor file
    (tmp_path / "tmp" / "probe-t").mkdir(parents=True)
    assert _probe(str(tmp_path), "t", "n1")["ok"] is False
    (tmp_path / "tmp" / "probe-t" / "from-supervisor").write_text("t")
    assert _probe(str(tmp_path), "t", "n1")["ok"] is True
    assert (tmp_path / "tmp" / "probe-t" / "from-n1").read_text() == "t"
