"""The GPU check: one command that measures the CUDA path and trains the GPU mini-study.

Sections (each time-boxed; each writes its numbers to ``OUT/gpu_check.json`` as they come, and an
error in one is recorded, not fatal):

  attention   every SDPA backend (flash, cuDNN, efficient) vs the math reference, fwd + bwd
  fused_ce    plain vs chunked vs liger LM head + CE at vocab 50,304: agreement, time, memory
  mini_study  the RunConfigs of ``bench/out/gpu_payload/runs.json`` trained with ``train_run``;
              run directories (no checkpoints) packed into ``OUT/mini_study.tar.gz``
  throughput  350m / 125m, AR / DLM, eager / torch.compile, seq 2048, largest batch; MFU

    PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT --device cuda     # on the device
    PYTHONPATH=. .venv/bin/python bench/gpu_check.py --out /tmp/gc --device cpu --tiny

``--tiny`` runs every section with tiny shapes in seconds (CUDA-only parts are recorded as
skipped with the reason); it is a default-suite test (tests/bench/test_gpu_check.py).
The device needs torch + pydantic + safetensors + pyarrow + pandas only (no Ray/Prefect/DuckDB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helpers
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repository (training_core)

import torch  # noqa: E402
from gpu_payload import DEFAULT_PAYLOAD, load_runs, pack_runs, relocate  # noqa: E402
from gpu_sections import (  # noqa: E402
    Section,
    attention_section,
    fused_ce_section,
    throughput_section,
)

# Seconds per section on the device (sum 430 s + start-up, inside an 8-minute command). The
# mini-study stops its runs at its deadline; throughput runs last because a torch.compile in
# flight cannot be cut short (a compiled cell starts only with >= 45 s left; the shell's
# timeout ends the rest).
BUDGET_S = {"attention": 25, "fused_ce": 45, "mini_study": 200, "throughput": 160}
TINY_BUDGET_S = {name: 60 for name in BUDGET_S}


class Results:
    """All measurements, rewritten atomically to ``path`` after every record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"sections": {}}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_mem_gib": props.total_memory / 2**30,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    for mod in ("triton", "liger_kernel", "flash_attn", "pydantic"):
        try:
            info[mod] = getattr(__import__(mod), "__version__", "installed")
        except Exception as err:  # noqa: BLE001 - absent, or present but broken: say which
            info[mod] = None if isinstance(err, ImportError) else f"import failed: {err}"
    return info


def run_section(
    results: Results, name: str, budget_s: float, fn: Callable[[Section], None]
) -> None:
    sec = Section(name, time.monotonic() + budget_s, results.save)
    results.data["sections"][name] = sec.data
    t0 = time.monotonic()
    print(f"== {name} (time box {budget_s:.0f} s)", flush=True)
    try:
        fn(sec)
    except Exception as err:  # noqa: BLE001 - recorded; the next section still runs
        sec.data["error"] = f"{type(err).__name__}: {err}"
        sec.data["traceback"] = traceback.format_exc()[-3000:]
        print(sec.data["traceback"], flush=True)
    sec.record("wall_s", time.monotonic() - t0)
    print(json.dumps(sec.data, default=str)[:4000], flush=True)


def mini_study_section(sec: Section, device: torch.device, payload: Path, out: Path) -> None:
    """Train the prepared RunConfigs (data paths moved to this machine) and pack their runs."""
    from training_core import StopRun, train_run
    from training_core.config import RunConfig

    prepared = load_runs(payload)  # FileNotFoundError -> recorded as the section's error
    home = str((payload / "home").resolve())
    work = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/gpu_check_runs"))
    shutil.rmtree(work, ignore_errors=True)
    run_dirs: list[Path] = []
    for entry in prepared["runs"]:
        cfg = RunConfig.model_validate(relocate(entry["config"], prepared["home"], home))
        if cfg.device not in ("auto", device.type):
            sec.record(entry["run_id"], {"skipped": f"prepared for {cfg.device}, not {device}"})
            continue
        if sec.left() <= 0:
            sec.record(entry["run_id"], {"skipped": "section time box reached"})
            continue

        def stop_at_deadline(_event: dict[str, Any]) -> None:
            if sec.left() <= 0:
                raise StopRun

        run_dir = work / cfg.run_id
        t0 = time.monotonic()
        try:
            result = train_run(cfg, run_dir, on_progress=stop_at_deadline)
            row = {
                "label": entry["label"],
                "status": result.status,
                "wall_s": time.monotonic() - t0,
                "tokens_per_s": result.tokens_per_s,
                "best_val_loss": result.best_val_loss,
                "final_val_loss": result.final_val_loss,
                "steps": result.steps,
            }
        except StopRun:
            row = {"label": entry["label"], "status": "stopped: time box reached"}
        sec.record(entry["run_id"], row)
        run_dirs.append(run_dir)
        # Re-pack after every run: a kill later still returns the runs finished so far.
        pack_runs(run_dirs, home, prepared["study"], out / "mini_study.tar.gz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU check (see module docstring)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (CPU test mode)")
    parser.add_argument("--payload", type=Path, default=DEFAULT_PAYLOAD)
    parser.add_argument(
        "--sections", default=",".join(BUDGET_S), help="comma list, run in this order"
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "gpu_check.json")
    results.data["environment"] = environment(device)
    results.data["mode"] = "tiny" if args.tiny else "full"
    results.save()
    budgets = TINY_BUDGET_S if args.tiny else BUDGET_S
    sections: dict[str, Callable[[Section], None]] = {
        "attention": lambda s: attention_section(s, device, args.tiny),
        "fused_ce": lambda s: fused_ce_section(s, device, args.tiny),
        "throughput": lambda s: throughput_section(s, device, args.tiny),
        "mini_study": lambda s: mini_study_section(s, device, args.payload, args.out),
    }
    for name in args.sections.split(","):
        if name not in sections:
            parser.error(f"--sections: unknown section {name!r}; choose from {list(sections)}")
        run_section(results, name, budgets[name], sections[name])
    print(f"results: {results.path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
