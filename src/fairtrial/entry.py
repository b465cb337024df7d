"""The `fairtrial` console script. `status --json` is answered without loading the full CLI:
machines poll it, and typer/rich/pydantic start-up alone costs ~0.4 s, more than the rest of the
command on 10,000 stage runs. Everything else goes to fairtrial.cli."""

from __future__ import annotations

import sys


def _fast_status(args: list[str]) -> int | None:
    if not args or args[0] != "status" or "--json" not in args:
        return None
    if any(a in ("--watch", "--help", "-h") for a in args):
        return None
    import argparse

    p = argparse.ArgumentParser(prog="fairtrial status", add_help=False)
    p.add_argument("study", nargs="?")
    p.add_argument("--workspace", "-w")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verify", action="store_true")
    p.add_argument("--all", action="store_true")
    try:
        ns, rest = p.parse_known_args(args[1:])
    except SystemExit:
        return None
    if rest or (ns.study or "").endswith(".toml"):
        return None  # anything unusual (a study file to parse): the full CLI
    import json
    import os

    from fairtrial.app.status import statuses, store_label
    from fairtrial.errors import UserError

    workspace = ns.workspace or os.environ.get("FAIRTRIAL_WORKSPACE")
    try:
        out = statuses(workspace, ns.study, ns.verify)
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        return e.exit_code
    except Exception as e:  # noqa: BLE001
        # a read-only, damaged or missing workspace: one line, as the full CLI says it
        from fairtrial.errors import environment_fault

        fault = environment_fault(e, store_label(workspace))
        if fault is None:
            return None  # anything else: the full CLI, which writes a crash log for a bug
        sys.stderr.write(f"error: {fault}\n")
        return fault.exit_code
    try:
        import orjson  # 5-10x faster than json on 20,000 small objects

        sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    except ImportError:
        sys.stdout.write(json.dumps(out) + "\n")
    return 0


def main() -> int:
    rc = _fast_status(sys.argv[1:])
    if rc is not None:
        return rc
    from fairtrial.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
