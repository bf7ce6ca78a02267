"""Training throughput of one preset, AR vs DLM, and achieved FLOP/s vs a large torch.mm.

One step = forward + backward + AdamW step through the real objectives. FLOPs per token come
from ``training_core.flops`` (causal attention counted as half). The matmul reference is measured
in the same process with the same thread count, so the ratio is an MFU-like figure for this
machine. Run:

    PYTHONPATH=. .venv/bin/python bench/bench_model.py --preset s --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time

import torch

from training_core.flops import flops_per_token, param_counts
from training_core.model import Transformer, model_preset
from training_core.objectives import ObjectiveConfig, build_objective


def matmul_flops_per_s(n: int, repeats: int) -> float:
    """Best-of-``repeats`` FLOP/s of an (n, n) @ (n, n) fp32 matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def train_tokens_per_s(args: argparse.Namespace, kind: str) -> float:
    """Tokens (B * seq_len per step) / wall time over ``steps`` timed steps after warm-up."""
    torch.manual_seed(0)
    cfg = model_preset(args.preset, args.vocab + 1, args.seq_len)
    model = Transformer(cfg)
    objective = build_objective(ObjectiveConfig(kind=kind), mask_id=args.vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    # Same (B, seq_len) windows for both, as the trainer feeds them (AR predicts seq_len - 1).
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=gen)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    def step() -> None:
        with amp:
            loss, _ = objective.loss(model, tokens, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - start
    return args.steps * args.batch * args.seq_len / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="s")
    parser.add_argument("--vocab", type=int, default=2048, help="data vocab (mask token added)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mm-size", type=int, default=2048)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CPU AMX)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = model_preset(args.preset, args.vocab + 1, args.seq_len)
    counts = param_counts(cfg)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__}, threads {args.threads}, load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"preset {args.preset}: d={cfg.d_model} L={cfg.depth} H={cfg.n_heads} "
        f"params total={counts['total']:,} non-embedding={counts['non_embedding']:,}; "
        f"batch {args.batch} x seq {args.seq_len}, {'bf16' if args.bf16 else 'fp32'}"
    )
    peak = matmul_flops_per_s(args.mm_size, repeats=5)
    print(f"torch.mm {args.mm_size}^3 fp32: {peak / 1e9:.1f} GFLOP/s")
    for kind in ("ar", "dlm"):
        tps = train_tokens_per_s(args, kind)
        fpt = flops_per_token(cfg, causal=kind == "ar")
        achieved = tps * fpt
        print(
            f"{kind:>3}: {tps:,.0f} tokens/s, {fpt / 1e6:.2f} MFLOP/token, "
            f"{achieved / 1e9:.2f} GFLOP/s = {achieved / peak:.1%} of torch.mm"
        )


if __name__ == "__main__":
    main()
