"""Connect to a Ray cluster, or start an embedded Ray on this machine that listens on loopback only.

``flows.dispatch`` calls this before it submits runs; the CLI's adaptive sweep and the tests call
it to hold one Ray for several grids. Importing this module never imports Ray.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flows.run_task import worker_env

LOOPBACK = "127.0.0.1"
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

# Ray waits a hard-coded 30 s for its raylet to register with the GCS; on a loaded machine
# (seen at load average ~20 on 2 cores) that runs out although nothing is wrong: start again.
_RAY_START_TIMEOUT = "timed out during startup"
_RAY_START_ATTEMPTS = 3


def connect_ray(
    address: str | None,
    num_cpus: int | None,
    temp_dir: Path | None = None,
    num_gpus: int | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Connect to ``address`` or start an embedded Ray (``num_gpus`` None: detect); returns True
    when this call connected or started it (the caller then shuts it down). ``env``: more
    environment variables for every worker, on top of ``worker_env()``."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {
        "runtime_env": {"env_vars": {**worker_env(), **(env or {})}},
        "logging_level": logging.ERROR,
        "log_to_driver": False,  # worker stdout would interleave with the progress line
        "configure_logging": True,
    }
    if address:
        ray.init(address=address, **common)
        return True
    # Ray's socket paths must stay under ~100 characters: a short dir under the system temp.
    temp = temp_dir or Path(tempfile.mkdtemp(prefix="ray-"))
    _loopback_only()
    for attempt in range(1, _RAY_START_ATTEMPTS + 1):
        try:
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                num_gpus=num_gpus,
                include_dashboard=False,
                _node_ip_address=LOOPBACK,
                object_store_memory=256 * 1024 * 1024,
                _temp_dir=str(temp),
                **common,
            )
            return True
        except Exception as err:  # Ray raises a bare Exception for this
            if _RAY_START_TIMEOUT not in str(err) or attempt == _RAY_START_ATTEMPTS:
                raise
            ray.shutdown()
            print(
                f"embedded Ray did not register within Ray's fixed 30 s (machine busy?); "
                f"starting it again ({attempt + 1}/{_RAY_START_ATTEMPTS})",
                file=sys.stderr,
                flush=True,
            )
    return True


def _loopback_only() -> None:
    """An embedded Ray listens on 127.0.0.1 only (no one else can submit code to it).

    On Linux, Ray 2.60 replaces a loopback node address by the machine's network address and its
    gRPC servers (GCS, raylet, workers, agents) then listen on every interface, with no
    authentication. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is Ray's switch for a single-machine
    node: the address stays loopback and every server binds it. Ray reads the variable when it
    is imported, so a driver that imported Ray before this call is switched too; every process
    Ray starts inherits the variable. Never set for a cluster (``address`` given)."""
    os.environ[_SINGLE_NODE_ENV] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
