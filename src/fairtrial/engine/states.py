"""The state of one stage run, derived from its verified artifact, its record and the liveness of
its process, never from a claim: the one rule that `fairtrial status`, the dashboard and the
report's progress counts use.

done     a verified manifest exists, produced for this study
cached   a verified manifest exists, produced earlier by another study (shared by key)
running  the record says running, its process is alive on this host and its heartbeat is recent
lost     the record says running but the process is gone or the heartbeat is stale; or it says
         done but the artifact is gone or corrupt
failed   the last attempt failed
pending  anything else (never started, interrupted, waiting for a retry)
"""

from __future__ import annotations

from fairtrial.base.process import alive
from fairtrial.engine.context import STALE_S


def derive_state(rec: dict | None, verified: bool, study: str, now: float,
                 this_host: str, stale_s: float = STALE_S) -> str:
    if verified:
        return "cached" if rec and rec.get("study") not in (None, study) else "done"
    if not rec:
        return "pending"
    st = rec.get("state")
    if st == "running":
        lives = alive(rec.get("pid"), host=rec.get("host"), this_host=this_host)
        fresh = rec.get("heartbeat_at") and now - rec["heartbeat_at"] <= stale_s
        if lives is False or not fresh:
            return "lost"
        return "running"
    if st == "failed":
        return "failed"
    if st == "done":
        return "lost"  # the record says done but the artifact is gone or corrupt
    return "pending"


