"""Training throughput of one preset, AR vs DLM, and achieved FLOP/s vs a large torch.mm.

One step = forward + backward + AdamW step through the real objectives. FLOPs per token come
from ``training_core.flops`` (causal attention counted as half). The matmul reference is measured
in the same process with the same thread count, so the ratio is an MFU-like figure for this
machine. Run:

    PYTHONPATH=. .venv/bin/python bench/bench_model.py --preset s --threads 1
    PYTHONPATH=. .venv/bin/python bench/bench_model.py --device cuda --bf16 --preset 350m \
        --vocab 50304 --seq-len 2048 --batch 8    # GPU: ratio to a bf16 torch.mm
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable

import torch

from training_core.attention import available_backends
from training_core.flops import flops_per_token, param_counts
from training_core.model import Transformer, model_preset
from training_core.objectives import ObjectiveConfig, build_objective


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(n: int, repeats: int, device: torch.device, dtype: torch.dtype) -> float:
    """Best-of-``repeats`` FLOP/s of an (n, n) @ (n, n) matmul."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def make_step(args: argparse.Namespace, kind: str) -> Callable[[], None]:
    """A closure running one training step (forward + backward + AdamW) of ``kind``."""
    torch.manual_seed(0)
    cfg = model_preset(args.preset, args.vocab + 1, args.seq_len)
    device = torch.device(args.device)
    model = Transformer(cfg).to(device)
    objective = build_objective(ObjectiveConfig(kind=kind), mask_id=args.vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator(device).manual_seed(0)
    # Same (B, seq_len) windows for both, as the trainer feeds them (AR predicts seq_len - 1).
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=gen, device=device)

    def step() -> None:
        amp = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if args.bf16
            else contextlib.nullcontext()
        )
        with amp:
            loss, _ = objective.loss(model, tokens, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="s")
    parser.add_argument("--vocab", type=int, default=2048, help="data vocab (mask token added)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mm-size", type=int, default=2048)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CPU AMX)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 mm reference there)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    mm_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    cfg = model_preset(args.preset, args.vocab + 1, args.seq_len)
    counts = param_counts(cfg)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__}, threads {args.threads}, load {os.getloadavg()[0]:.2f}, "
        f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
        f"attention backends {available_backends()}"
    )
    print(
        f"preset {args.preset}: d={cfg.d_model} L={cfg.depth} H={cfg.n_heads} "
        f"params total={counts['total']:,} non-embedding={counts['non_embedding']:,}; "
        f"batch {args.batch} x seq {args.seq_len}, {'bf16' if args.bf16 else 'fp32'}"
    )
    steps = {kind: make_step(args, kind) for kind in ("ar", "dlm")}
    for step in steps.values():  # warm-up
        for _ in range(args.warmup):
            step()
    # The machine is shared: interleave AR, DLM and the matmul over rounds, keep each one's best.
    best = {"ar": 0.0, "dlm": 0.0, "mm": 0.0}
    for _ in range(args.rounds):
        best["mm"] = max(best["mm"], matmul_flops_per_s(args.mm_size, 3, device, mm_dtype))
        for kind, step in steps.items():
            tps = args.steps * args.batch * args.seq_len / timed(step, args.steps, device)
            best[kind] = max(best[kind], tps)
    peak = best["mm"]
    print(f"torch.mm {args.mm_size}^3 {mm_dtype}: {peak / 1e9:.1f} GFLOP/s (best of {args.rounds})")
    for kind in ("ar", "dlm"):
        fpt = flops_per_token(cfg, causal=kind == "ar")
        achieved = best[kind] * fpt
        print(
            f"{kind:>3}: {best[kind]:,.0f} tokens/s, {fpt / 1e6:.2f} MFLOP/token, "
            f"{achieved / 1e9:.2f} GFLOP/s = {achieved / peak:.1%} of torch.mm"
        )


if __name__ == "__main__":
    main()
