"""The Ray executor: each stage run is a Ray task on an existing cluster (or a local Ray started
for the run when no address is given and none is running).

- Resources: a task asks Ray for the stage's `cpus` (num_cpus), `gpus` (num_gpus; Ray sets
  CUDA_VISIBLE_DEVICES) and `memory_gb` (Ray's `memory` resource). A stage asking for more than
  any node has is refused before anything runs, naming the stage and what it asked.
- Where it runs: the task writes its own pid and host, heartbeats and progress to the record store
  (`Store.set_run_process`, `context.Heartbeat`), so status, ETA and `lost` work as locally, and
  it ends itself when its supervisor's lease is gone.
- Storage: the workspace must be on a file system every node sees (the artifacts, checkpoints and
  logs are plain folders). At start a probe task pinned to each node reads a file the supervisor
  wrote there and writes one back; a node that cannot is named and nothing runs.
- Records: nodes on more than one host need a database every host reaches: with a SQLite store
  the run is refused with a message naming FAIRTRIAL_DB_URL.
- Exactly once: the task writes into an attempt-scoped temporary folder and commits by atomic
  rename (`artifacts.commit`); a task (or a Ray retry of one) that finds its key committed returns
  it without running the stage (`worker.run_task`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fairtrial.engine.executor import Finished
from fairtrial.engine.task import Resources, Result, Task
from fairtrial.errors import Refused
from fairtrial.workspace import Workspace

MIN_RAY = (2, 9)
"""The oldest Ray this executor accepts (it uses NodeAffinitySchedulingStrategy with soft=False,
task `memory` requests and `ray.cancel(force=True)`); tested with 2.60."""
CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 60.0
PASS_ENV = ("FAIRTRIAL_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")
"""Environment variables of the supervisor that its tasks see too (nodes started elsewhere do
not share the supervisor's environment)."""
GB = 2**30


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def import_ray():
    try:
        import ray
    except ImportError:
        raise Refused("the Ray executor needs Ray: pip install 'fairtrial[ray]'") from None
    if _version_tuple(ray.__version__) < MIN_RAY:
        raise Refused(f"Ray {ray.__version__} is too old for the Ray executor; it needs Ray >= "
                      f"{'.'.join(map(str, MIN_RAY))} (pip install -U 'ray>={MIN_RAY[0]}.{MIN_RAY[1]}')")
    return ray


def _reachable(address: str) -> str | None:
    """Why `address` (host:port of a Ray head's GCS) cannot be reached, else None. Checked with
    a plain TCP connect first, because ray.init on a dead address retries for a minute."""
    addr = address.removeprefix("ray://")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        return f'"{address}" is not an address of the form HOST:PORT'
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as e:
        return f"{e.strerror or e}"


def cluster_problems(nodes: list[dict], db_url: str, needs: Iterable[tuple[str, Resources]],
                     address: str) -> str | None:
    """The first reason the study cannot run on these nodes (alive nodes as ray.nodes() gives
    them), else None. Pure: unit-tested on plain dicts."""
    hosts = sorted({n.get("NodeManagerAddress") or n.get("NodeManagerHostname") for n in nodes})
    if len(hosts) > 1 and db_url.startswith("sqlite"):
        return (f"the Ray cluster at {address} has nodes on {len(hosts)} hosts "
                f"({', '.join(map(str, hosts))}) and the record store is SQLite, which only one "
                "host can use; set FAIRTRIAL_DB_URL to a PostgreSQL database every node reaches "
                "(e.g. postgresql+psycopg://user@dbhost/fairtrial)")
    seen = set()
    for stage, r in needs:
        if (stage, r) in seen:
            continue
        seen.add((stage, r))
        ok = any(n["Resources"].get("CPU", 0) >= r.cpus - 1e-9
                 and n["Resources"].get("GPU", 0) >= r.gpus
                 and n["Resources"].get("memory", 0) >= r.memory_gb * GB * (1 - 1e-9)
                 for n in nodes)
        if not ok:
            big = max(nodes, key=lambda n: (n["Resources"].get("GPU", 0),
                                            n["Resources"].get("CPU", 0)), default=None)
            most = ("no alive node" if big is None else
                    f"the largest node has {big['Resources'].get('CPU', 0):g} CPUs, "
                    f"{big['Resources'].get('GPU', 0):g} GPUs, "
                    f"{big['Resources'].get('memory', 0) / GB:.1f} GB memory")
            return (f"stage {stage} asks for {r.cpus:g} CPUs, {r.gpus} GPUs and {r.memory_gb:g} GB "
                    f"memory; no node of the Ray cluster at {address} has that ({most}). Lower "
                    f"resources.{stage} in the study file or add a node that has it")
    return None


def _probe(ws_root: str, token: str, node_id: str) -> dict:
    """Runs on one node: read the file the supervisor wrote, write one back."""
    folder = Path(ws_root) / "tmp" / f"probe-{token}"
    try:
        seen = (folder / "from-supervisor").read_text()
        (folder / f"from-{node_id}").write_text(token)
        return {"ok": seen == token, "host": socket.gethostname(), "error": None}
    except OSError as e:
        return {"ok": False, "host": socket.gethostname(), "error": str(e)}


def _run_on_ray(task: dict[str, Any], ws_root: str, db_url: str, env: dict[str, str]) -> dict:
    """The Ray task: one attempt of one stage run, inside a Ray worker process."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from fairtrial.engine.context import Heartbeat
    from fairtrial.engine.worker import run_task
    from fairtrial.store.db import Store

    ws = Workspace(Path(ws_root))
    try:  # which node ran it, in the run's log (a user tracing a run to a machine reads it there)
        import ray

        node = ray.get_runtime_context().get_node_id()
        ws.log(task["key"]).parent.mkdir(parents=True, exist_ok=True)
        with open(ws.log(task["key"]), "a") as f:
            f.write(f"ray task attempt {task.get('attempt')} on node {node} "
                    f"(host {socket.gethostname()}, pid {os.getpid()})\n")
    except Exception:  # noqa: BLE001 - only a log line
        pass
    store = Store(db_url)
    hb = Heartbeat(store)
    hb.start()
    try:
        return run_task(task, store, ws, hb)
    finally:
        hb.stop()
        # this Ray worker process lives on (Ray reuses it): it no longer holds the lease
        try:
            store.set_lease_worker(task["key"], task.get("lease_token") or "", None, None)
        except Exception:  # noqa: BLE001 - the supervisor releases the lease anyway
            pass
        store.dispose()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RayExecutor:
    name = "ray"

    def __init__(self, ws: Workspace, db_url: str, address: str | None = None,
                 max_retries: int = 0):
        self.ray = import_ray()
        self.ws = ws
        self.db_url = db_url
        self.max_retries = max_retries
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address and self.address != "auto":
            why = _reachable(self.address)
            if why:
                raise Refused(f"cannot reach the Ray cluster at {self.address}: {why}; start it "
                              "with `ray start --head` or check --address")
        self._own = False
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=self.address or None, logging_level="ERROR",
                              log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise Refused(f"cannot connect to the Ray cluster at {self.address or 'auto'}: "
                              f"{str(e).splitlines()[0]}") from None
            self._own = True
        self._remote = self.ray.remote(_run_on_ray)
        self.refs: dict[Any, Task] = {}
        self.used = {"cpus": 0.0, "gpus": 0.0}
        env = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV)}
        env.pop("FAIRTRIAL_DB_URL", None)  # the task gets the store's URL explicitly
        self.env = env

    # ---- before anything runs ----
    def nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def check(self, needs) -> None:
        nodes = self.nodes()
        problem = cluster_problems(nodes, self.db_url, list(needs), self.address or "auto")
        if problem:
            raise Refused(problem)
        self.probe(nodes)
        total = self.ray.cluster_resources()
        self.total = {"cpus": total.get("CPU", 0.0), "gpus": total.get("GPU", 0.0)}

    def probe(self, nodes: list[dict]) -> None:
        """A write-then-read probe on every node: the workspace must be the same folder there."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = uuid.uuid4().hex
        folder = self.ws.tmp / f"probe-{token}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            (folder / "from-supervisor").write_text(token)
            probe = self.ray.remote(_probe)
            refs = {n["NodeID"]: probe.options(
                num_cpus=0, max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(str(self.ws.root), token, n["NodeID"]) for n in nodes}
            for node_id, ref in refs.items():
                where = next(f"{n.get('NodeManagerAddress')} ({node_id[:8]})" for n in nodes
                             if n["NodeID"] == node_id)
                try:
                    res = self.ray.get(ref, timeout=PROBE_TIMEOUT_S)
                except Exception as e:  # noqa: BLE001 - any failure means the node is unusable
                    raise Refused(f"the workspace probe on node {where} failed: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                  ) from None
                back = folder / f"from-{node_id}"
                if not res["ok"] or not back.exists() or back.read_text() != token:
                    raise Refused(f"node {where} cannot see the workspace {self.ws.root} "
                                  f"({res.get('error') or 'it wrote where this machine does not read'}); "
                                  "put the workspace on a file system every node mounts at the "
                                  "same path")
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    # ---- the executor protocol ----
    def cannot_run(self, stage: str, res: Resources) -> str | None:
        return None  # refused up front by check()

    def fits(self, r: Resources) -> bool:
        # keep no more in flight than the cluster can run at once: a task queued inside Ray
        # would hold its lease (and show `running`) without running
        total = getattr(self, "total", None) or {"cpus": float("inf"), "gpus": float("inf")}
        return (self.used["cpus"] + r.cpus <= total["cpus"] + 1e-9
                and self.used["gpus"] + r.gpus <= total["gpus"] + 1e-9)

    def submit(self, task: Task) -> None:
        r = task.resources
        task.device = "cuda" if r.gpus else "cpu"
        task.cpus = r.cpus
        env = dict(self.env, OMP_NUM_THREADS=str(max(1, int(r.cpus))),
                   MKL_NUM_THREADS=str(max(1, int(r.cpus))), TOKENIZERS_PARALLELISM="false")
        opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": r.gpus,
                                "max_retries": self.max_retries, "retry_exceptions": False}
        if r.memory_gb:
            opts["memory"] = int(r.memory_gb * GB)
        ref = self._remote.options(**opts).remote(task.to_dict(), str(self.ws.root),
                                                  self.db_url, env)
        self.refs[ref] = task
        self.used["cpus"] += r.cpus
        self.used["gpus"] += r.gpus

    def _forget(self, ref) -> Task:
        task = self.refs.pop(ref)
        self.used["cpus"] -= task.resources.cpus
        self.used["gpus"] -= task.resources.gpus
        return task

    def poll(self, timeout: float) -> list[Finished]:
        if not self.refs:
            return []
        refs = list(self.refs)
        ready, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:  # whatever else ended meanwhile, without waiting
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out = []
        for ref in ready:
            task = self._forget(ref)
            try:
                out.append(Finished(task.key, Result.from_dict(self.ray.get(ref))))
            except self.ray.exceptions.TaskCancelledError:
                continue
            except self.ray.exceptions.RayTaskError as e:
                # an error in the task's own wrapper (run_task catches the stage's errors)
                cause = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                now = time.time()
                out.append(Finished(task.key, Result(task.key, "failed", now, now,
                                                     error=f"Ray task failed: {cause}")))
            except self.ray.exceptions.RayError as e:
                # the worker process or its node died (WorkerCrashedError, NodeDiedError, ...)
                out.append(Finished(task.key, None,
                                    f"Ray task lost ({type(e).__name__})"))
        return out

    def running(self) -> list[str]:
        return [t.key for t in self.refs.values()]

    def cancel(self, key: str) -> None:
        for ref, task in list(self.refs.items()):
            if task.key == key:
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - it may have ended meanwhile
                    pass
                self._forget(ref)

    def shutdown(self) -> None:
        for key in self.running():
            self.cancel(key)
        if self._own:
            self.ray.shutdown()
