"""Entry point: ``python -m training_core.launch --config run_config.json --run-dir DIR``.

Under torchrun (``WORLD_SIZE`` > 1) every process joins the process group first (gloo on the CPU,
nccl on CUDA) and ``train_run`` trains the run sharded with FSDP2; alone it is a plain
single-process run. The exit status is 0 only when the run completed.

A rank must never outlive the processes that own the run: torchrun starts ranks in sessions of
their own, so a SIGKILL of torchrun (or of the Ray worker above it) would leave them training
into the run directory next to the retry. Each rank exits when its parent changes (torchrun
died) or when the process named by ``TRAINING_CORE_WATCH_PID`` is gone (``flows.dispatch`` sets it
to the Ray worker).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

from training_core import data_parallel
from training_core.config import RunConfig

WATCH_PID_ENV = "TRAINING_CORE_WATCH_PID"
_WATCH_EVERY_S = 0.2  # a stale rank must be gone before a retry reads the checkpoint


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def exit_with_owners() -> None:
    """Start a daemon thread that ends this process (exit status 1) once its parent or the
    ``TRAINING_CORE_WATCH_PID`` process is gone."""
    parent = os.getppid()
    watched = int(os.environ[WATCH_PID_ENV]) if os.environ.get(WATCH_PID_ENV) else None

    def watch() -> None:
        while True:
            time.sleep(_WATCH_EVERY_S)
            if os.getppid() != parent or (watched is not None and not _alive(watched)):
                os._exit(1)  # no cleanup: the owner is gone and a retry resumes from the ckpt

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training_core.launch", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="RunConfig as JSON.")
    parser.add_argument("--run-dir", type=Path, required=True, help="The run's directory.")
    return parser


@record  # an exception is written to TORCHELASTIC_ERROR_FILE (torchrun sets it per rank)
def main(argv: Sequence[str] | None = None) -> int:
    """Train (or resume, or skip) the run; returns the exit status (0: completed).

    An exception leaves through ``@record``: torch elastic writes it (message, traceback) to the
    rank's error file, and torchrun copies the first failing rank's file to its own
    ``TORCHELASTIC_ERROR_FILE``, where ``flows.torchrun`` reads the reason of a run that died
    before rank 0 could write result.json."""
    args = build_parser().parse_args(argv)
    cfg = RunConfig.model_validate_json(args.config.read_text())
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_with_owners()
    started = data_parallel.init_from_env()
    from training_core.trainer import train_run

    # An exception propagates without the closing barrier: the process exits non-zero and torchrun
    # stops the other ranks (a barrier here would wait for ranks stuck in a collective).
    result = train_run(cfg, args.run_dir)
    is_main = data_parallel.current().is_main
    if started:
        data_parallel.shutdown()
    if is_main and result.status != "completed":
        print(f"run {cfg.run_id} failed: {result.failure_reason}", file=sys.stderr)
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
