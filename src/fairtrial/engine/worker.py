"""A worker process: receives stage runs from its supervisor over a pipe, runs each one with its
output going to the run's log, commits the artifact, and answers with the outcome.

Outcomes: done | failed (StageError or a bug) | transient (TransientError: retry with back-off)
| oom (OutOfMemory, MemoryError, torch.cuda.OutOfMemoryError: apply the OOM policy).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _is_oom(e: BaseException) -> bool:
    from fairtrial.recipes.api import OutOfMemory

    if isinstance(e, (OutOfMemory, MemoryError)):
        return True
    name = type(e).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(e).lower()[:200]


class _RedirectOutput:
    """Send fd 1 and 2 (Python and C-level output) to the run's log for the duration."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.f = open(self.path, "ab", buffering=0)
        self.saved = (os.dup(1), os.dup(2))
        os.dup2(self.f.fileno(), 1)
        os.dup2(self.f.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        os.close(self.saved[0])
        os.close(self.saved[1])
        self.f.close()


def _check_metrics(out: Path, recipe, stage: str) -> None:
    """Refuse item scores of a metric the recipe does not declare: the analysis could not know
    its direction or aggregation, so such scores must not be committed."""
    from fairtrial.recipes.api import StageError
    from fairtrial.scores import FILENAME

    path = out / FILENAME
    if not path.exists():
        return
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        written = pc.unique(pq.read_table(path, columns=["metric"])["metric"]).to_pylist()
    except (OSError, KeyError, ValueError) as e:  # pyarrow's errors are ValueError/OSError kinds
        raise StageError(f"stage {stage} wrote an unreadable {FILENAME}: {e}") from None
    declared = {m.name for m in recipe.metrics}
    unknown = sorted({str(m) for m in written} - declared)
    if unknown:
        raise StageError(f"stage {stage} wrote item scores of metric"
                         f"{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}, which "
                         f"recipe {recipe.name} does not declare (declared: "
                         f"{', '.join(sorted(declared)) or 'none'}); declare it in the recipe's "
                         "metrics with its direction and aggregation")


def run_task(task: dict[str, Any], store, ws, heartbeat) -> dict[str, Any]:
    from fairtrial.base.process import start_time
    from fairtrial.engine.context import RunContext
    from fairtrial.recipes import registry
    from fairtrial.recipes.api import StageError, StageParams, TransientError
    from fairtrial.store import artifacts

    key = task["key"]
    started = time.time()
    # the task says where it runs (not its supervisor): status, `lost` and the kill tests read it
    try:
        store.set_run_process(key, task.get("lease_token"), os.getpid(), socket.gethostname(),
                              start_time())
    except Exception:  # noqa: BLE001 - a full disk or a blinking database: the stage still runs,
        pass  # its heartbeat tries again, and the supervisor meets the same error and says so
    done = _already_committed(ws, key)
    if done is not None:
        # a retry (by Ray, or after a lost supervisor) of a run whose commit happened: exactly once
        shutil.rmtree(ws.checkpoint(key), ignore_errors=True)
        return {"key": key, "outcome": "done", "summary": done.get("summary") or {},
                "started": started, "ended": time.time(), "files": len(done.get("files", {})),
                "committed": False}
    log_path = ws.log(key)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = artifacts.new_tmp(ws, key)
    out = tmp / "out"
    ckpt = ws.checkpoint(key)
    ckpt.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"fairtrial.stage.{key[:12]}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    _watch(heartbeat, key, task.get("lease_token"))
    with _RedirectOutput(log_path):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.handlers[:] = [handler]
        logger.info("stage %s (%s) attempt %s: key %s", task["stage"], task["recipe"],
                    task.get("attempt"), key)
        logger.info("params %s seed %s", task["params"], task["seed"])
        try:
            recipe = registry.get(task["recipe"])
            stage = recipe.stage(task["stage"])
            inputs = {n: Path(p) for n, p in task["inputs"].items()}
            params = StageParams(task["params"], stage.name, stage.params, recipe.params)
            ctx = RunContext(key=key, store=store, params=params, seed=task["seed"],
                             out=out, inputs=inputs, checkpoint_dir=ckpt, log=logger,
                             device=task.get("device", "cpu"), cpus=task.get("cpus", 1))
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(max(1, int(task.get("cpus", 1))))
            summary = stage.fn(ctx) or {}
            _check_metrics(out, recipe, stage.name)
            ended = time.time()
            read = {}
            for n, p in inputs.items():
                try:
                    read[n] = artifacts.read_manifest(p)
                except (OSError, ValueError):
                    read[n] = None
            manifest = artifacts.commit(ws, key, out, {
                "recipe": task["recipe"], "stage": task["stage"], "version": stage.version,
                "params": task["declared_params"], "effective_params": task["params"],
                "adjustments": task.get("adjustments", []), "seed": task["seed"],
                "needs": task["needs"], "input_digests": artifacts.input_digests(read),
                "input_digest_kind": artifacts.INPUT_DIGESTS,
                "input_files": task.get("input_files", {}), "study": task.get("study"),
                "started_at": started, "ended_at": ended, "summary": summary,
            })
            committed = manifest.pop("_committed", True)
            if committed:
                logger.info("committed artifact %s", key)
            else:
                logger.info("artifact %s was already committed by another run; ours discarded", key)
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(ckpt, ignore_errors=True)
            logger.info("done in %.2fs", ended - started)
            return {"key": key, "outcome": "done", "summary": summary, "started": started,
                    "ended": ended, "files": len(manifest.get("files", {})),
                    "committed": committed}
        except StageError as e:
            logger.error("failed: %s", e)
            outcome, msg = "failed", str(e)
        except TransientError as e:
            logger.warning("transient failure: %s", e)
            outcome, msg = "transient", str(e)
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            logger.error("%s", traceback.format_exc())
            if _is_oom(e):
                outcome, msg = "oom", f"{type(e).__name__}: {e}"
            else:
                outcome, msg = "failed", f"{type(e).__name__}: {e} (traceback in the log)"
        finally:
            _watch(heartbeat, None, None)
        shutil.rmtree(tmp, ignore_errors=True)
        return {"key": key, "outcome": outcome, "error": msg, "started": started,
                "ended": time.time()}


def _watch(heartbeat, key: str | None, token: str | None) -> None:
    if hasattr(heartbeat, "watch"):
        heartbeat.watch(key, token)
    else:  # a bare stand-in (the stage-contract tests run run_task in their own process)
        heartbeat.key = key


def _already_committed(ws, key: str) -> dict | None:
    """The manifest of a verified artifact of `key` made from its current inputs, else None."""
    from fairtrial.store import artifacts

    v = artifacts.verify(ws, key)
    if v.ok and not artifacts.stale_inputs(ws, v.manifest):
        return v.manifest
    return None


def worker_main(conn, env: dict[str, str], ws_root: str, db_url: str) -> None:
    """Entry point of a local worker process (multiprocessing 'spawn'). It ends when its pipe
    closes (the supervisor is gone) and, mid-stage, when its lease is lost (see Heartbeat)."""
    os.environ.update(env)
    from fairtrial.engine.context import Heartbeat
    from fairtrial.store.db import Store
    from fairtrial.workspace import Workspace

    ws = Workspace(Path(ws_root))
    store = Store(db_url)
    hb = Heartbeat(store)
    hb.start()
    try:
        while True:
            try:
                task = conn.recv()
            except EOFError:
                break
            if task is None:
                break
            result = run_task(task, store, ws, hb)
            try:
                conn.send(result)
            except (BrokenPipeError, ConnectionError, OSError):
                # the supervisor is gone: the artifact (if any) is committed and the next
                # supervisor closes this attempt from it; end quietly, no traceback in its log
                break
    except KeyboardInterrupt:
        pass
    finally:
        hb.stop()
        store.dispose()
