"""`flows server`: a Prefect server whose UI talks to the port it was started on, and that stops
with its parent.

`prefect server start --port P` alone serves a UI whose `/ui-settings` names the API from
PREFECT_UI_API_URL, else PREFECT_API_URL, else PREFECT_SERVER_API_HOST/PORT (4200): the
`--port` flag reaches none of them. So the child gets all of them for P. The child runs in its
own process group (it starts its own workers); SIGTERM, SIGINT or SIGHUP to `flows server` stop
that whole group, with a SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

STOP_GRACE_S = 20.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stop(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def api_url(host: str, port: int) -> str:
    """The address clients use: a wildcard bind is reached through the loopback address."""
    reach = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
    if ":" in reach and not reach.startswith("["):
        reach = f"[{reach}]"
    return f"http://{reach}:{port}/api"


def server_env(host: str, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: every Prefect setting that decides the UI's API address is P."""
    env = dict(os.environ if base is None else base)
    url = api_url(host, port)
    env.update(
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=url,
        PREFECT_API_URL=url,
    )
    return env


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def serve(host: str, port: int) -> int:
    """Run `prefect server start` in the foreground until it exits or this process is signalled."""
    if port_in_use(host, port):
        print(
            f"flows server: port {port} on {host} is in use; choose another with --port",
            file=sys.stderr,
        )
        return 2
    prefect = Path(sys.executable).with_name("prefect")  # the one next to this Python
    launcher = [str(prefect)] if prefect.is_file() else [sys.executable, "-m", "prefect"]
    cmd = [*launcher, "server", "start", "--host", host, "--port", str(port)]
    url = api_url(host, port)
    print(
        f"Prefect UI: {url.removesuffix('/api')}  (clients: export PREFECT_API_URL={url})",
        flush=True,
    )

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=server_env(host, port), start_new_session=True)
        return proc.wait()
    except _Stop as stop:
        return 128 + stop.signum
    finally:
        for sig in _STOP_SIGNALS:  # a second signal must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop_group(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
