"""Start the dashboard: bind the socket, make the per-start token, print the address, run uvicorn."""

from __future__ import annotations

import errno
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fairtrial.app import dashboard
from fairtrial.errors import UserError
from fairtrial.web.app import create_app

ALL_INTERFACES = ("0.0.0.0", "::")
LOOPBACK = {"127.0.0.1": ("127.0.0.1", "localhost"), "::1": ("[::1]", "localhost"),
            "localhost": ("localhost", "127.0.0.1")}


def allowed_hosts(host: str, port: int) -> set[str] | None:
    """The Host headers accepted (DNS-rebinding protection): the bound address with its port
    (and `localhost` for a loopback address). None when bound to every interface: any Host is
    accepted there, and only the token protects the dashboard."""
    if host in ALL_INTERFACES:
        return None
    names = LOOPBACK.get(host, (f"[{host}]" if ":" in host else host,))
    return {f"{n}:{port}".lower() for n in names}


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise UserError(f"--host {host}: cannot open a socket: {e.strerror}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: the port is in use; give another (--port 0 picks a "
                            "free one)") from None
        if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
            raise UserError(f"--host {host}: not an address of this machine") from None
        raise UserError(f"--host {host} --port {port}: cannot listen there: "
                        f"{e.strerror or e}") from None
    sock.listen(128)
    return sock


def serve(workspace: str | Path | None, host: str = "127.0.0.1", port: int = 8765,
          on_ready: Callable[[dict[str, Any]], None] | None = None, token: str | None = None) -> None:
    """Serve the dashboard until interrupted. `on_ready({"url", "host", "port", "token",
    "workspace", "all_interfaces"})` is called once the socket listens."""
    import uvicorn

    r = dashboard.reader(workspace)
    token = token or secrets.token_urlsafe(24)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    app = create_app(r, token, allowed_hosts(host, port))
    shown = "127.0.0.1" if host in ALL_INTERFACES else (f"[{host}]" if ":" in host else host)
    if host in ALL_INTERFACES:
        shown = socket.gethostname()
    url = f"http://{shown}:{port}/?token={token}"
    if on_ready:
        on_ready({"url": url, "host": host, "port": port, "token": token,
                  "workspace": str(r.ws.root), "all_interfaces": host in ALL_INTERFACES})
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        r.store.dispose()
