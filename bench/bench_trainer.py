"""CPU training throughput of a preset through ``train_run``, AR vs DLM (evals timed apart).

Usage: python bench/bench_trainer.py [--preset tiny] [--steps 30] [--threads 2]

Training tokens/s comes from the run's own accounting (time inside optimizer steps only); the
evaluation cost is the rest of the wall time and is reported separately. Achieved FLOP/s uses the
run's FLOPs/token and is compared with a large ``torch.mm`` measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from training_core import DataConfig, ObjectiveConfig, RunConfig, model_preset, train_run


def mm_flops_per_s(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def bench(kind: str, args: argparse.Namespace, root: Path) -> dict:
    vocab, seq = args.vocab, args.seq_len
    n_tokens = args.steps * args.batch_size * seq
    rng = np.random.default_rng(0)
    train = root / "train.ds"
    rng.integers(0, vocab, n_tokens, dtype=np.uint16).astype("<u2").tofile(train)
    val = root / "val.ds"
    rng.integers(0, vocab, 8 * seq, dtype=np.uint16).astype("<u2").tofile(val)
    cfg = RunConfig(
        model=model_preset(args.preset, vocab_size=vocab + 1, seq_len=seq),
        objective=ObjectiveConfig(kind=kind),
        optim={"batch_size": args.batch_size, "lr": 1e-3},
        # One eval at the end (no step-0 eval) so its cost can be reported apart.
        eval={"every_epochs": None, "at_start": False, "elbo_samples": 4},
        data=DataConfig(
            train_files=(str(train),),
            val_files=(str(val),),
            vocab_size=vocab,
            unique_tokens=n_tokens,
        ),
        epochs=1.0,
        device="cpu",
        threads=args.threads,
    )
    t0 = time.perf_counter()
    result = train_run(cfg, root / f"run_{kind}")
    wall = time.perf_counter() - t0
    train_s = result.tokens_seen / result.tokens_per_s
    return {
        "objective": kind,
        "steps": result.steps,
        "tokens": result.tokens_seen,
        "train_tokens_per_s": round(result.tokens_per_s),
        "train_flops_per_s": result.tokens_per_s * result.flops_per_token,
        "eval_s": round(result.wall_s - train_s, 3),
        "total_wall_s": round(wall, 2),
        "n_params": result.n_params,
        "n_params_nonembed": result.n_params_nonembed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, threads {args.threads}"
    )
    peak = mm_flops_per_s()
    print(f"torch.mm 1024^3 fp32: {peak / 1e9:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("ar", "dlm"):
            root = Path(tmp) / kind
            root.mkdir()
            row = bench(kind, args, root)
            row["mfu_vs_mm"] = round(row["train_flops_per_s"] / peak, 3)
            row["train_flops_per_s"] = f"{row['train_flops_per_s'] / 1e9:.2f} GFLOP/s"
            print(json.dumps(row))


if __name__ == "__main__":
    main()
