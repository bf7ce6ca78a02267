"""The measuring sections of ``bench/gpu_check.py``: attention backends, throughput/MFU, fused CE.

Each section takes a ``Section`` (deadline + incremental ``record``) and the shapes of its mode;
``--tiny`` shapes run on the CPU in seconds so the code cannot rot. Every measurement is written
the moment it exists; a failing sub-measurement is recorded with its error and the rest go on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from training_core.flops import flops_per_token, param_counts
from training_core.fused_ce import liger_available, linear_cross_entropy
from training_core.model import Transformer, model_preset
from training_core.objectives import ObjectiveConfig, build_objective

H200_BF16_DENSE_PEAK = 989.5e12  # FLOP/s, datasheet dense bf16 (no sparsity)


@dataclass
class Section:
    """One section's results; ``save`` is called after every record (the JSON on disk)."""

    name: str
    deadline: float  # time.monotonic() by which the section should stop starting new work
    save: Callable[[], None]
    data: dict[str, Any] = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mem_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mem_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_flops(device: torch.device, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    """Best FLOP/s of an (n, n) @ (n, n) matmul: the achievable peak MFU is also quoted against."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# --- (a) attention ------------------------------------------------------------------------------
def _sdpa_backends(device: torch.device) -> dict[str, Any]:
    from torch.nn.attention import SDPBackend

    names = {"math": SDPBackend.MATH}
    if device.type == "cuda":
        names |= {
            "flash": SDPBackend.FLASH_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
        }
    return names


def _attn_fwd_bwd(q, k, v, grad_out, causal: bool, backend: Any):
    from torch.nn.attention import sdpa_kernel

    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    with sdpa_kernel(backend):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, D)
    out.backward(grad_out)
    return out.detach(), q.grad, k.grad, v.grad


def attention_section(sec: Section, device: torch.device, tiny: bool) -> None:
    """Every SDPA backend against an fp32 math reference, fwd + bwd, causal and bidirectional."""
    B, H, T, D = (2, 2, 64, 32) if tiny else (4, 16, 2048, 128)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sec.record("shape_BHTD", [B, H, T, D])
    sec.record("dtype", str(dtype))
    if device.type != "cuda":
        sec.record("skipped", "flash/cudnn/efficient need CUDA; math backend only")
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v, g = (torch.randn(B, H, T, D, generator=gen, device=device) for _ in range(4))
    backends = _sdpa_backends(device)
    for causal in (True, False):
        ref = _attn_fwd_bwd(q, k, v, g, causal, backends["math"])  # fp32 math: the reference
        for name, backend in backends.items():
            key = f"{name}_{'causal' if causal else 'bidirectional'}"
            try:
                lowp = (t.to(dtype) for t in (q, k, v, g))
                got = _attn_fwd_bwd(*lowp, causal, backend)
                errs = {
                    f"max_abs_err_{n}": float((a.float() - r).abs().max())
                    for n, a, r in zip(("out", "dq", "dk", "dv"), got, ref, strict=True)
                }
                fn = lambda b=backend, c=causal: _attn_fwd_bwd(  # noqa: E731
                    *(t.to(dtype) for t in (q, k, v, g)), c, b
                )
                ms = 1e3 * timed(fn, device, warmup=1, repeats=2 if tiny else 5)
                sec.record(key, {**errs, "fwd_bwd_ms": ms})
            except RuntimeError as err:  # backend unavailable for this shape/dtype/GPU
                sec.record(key, {"error": str(err).splitlines()[0][:300]})
    sec.record(
        "note",
        "errors vs an fp32 math-backend reference; math_* in the check's dtype is the yardstick",
    )


# --- (b) throughput and MFU ---------------------------------------------------------------------
@dataclass
class Bench:
    """One model + objective + optimizer, ready to take timed training steps."""

    model: torch.nn.Module
    step: Callable[[], float]
    fpt: float


def build_bench(
    preset: str, kind: str, batch: int, seq: int, vocab: int, device: torch.device, **opts: Any
) -> Bench:
    """A training step of ``preset`` (bf16 autocast on CUDA) through the real objective."""
    cfg = model_preset(preset, vocab, seq)
    torch.manual_seed(0)
    with torch.device(device):
        model = Transformer(cfg)
    if opts.get("compile"):
        torch.compiler.reset()  # a fresh cache per model: no recompile limit across cells
        for block in model.layers:  # per block, like fsdp.py: one graph for every layer
            block.compile(backend=opts.get("compile_backend", "inductor"))
    objective = build_objective(ObjectiveConfig(kind=kind), vocab - 1, opts.get("loss", "plain"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    width = seq + 1 if kind == "ar" else seq  # AR windows carry the shifted target
    gen = torch.Generator(device=device).manual_seed(0)
    tokens = torch.randint(0, vocab - 1, (batch, width), device=device, generator=gen)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = objective.loss(model, tokens, gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return Bench(model, step, flops_per_token(cfg, causal=kind == "ar"))


def _measure(bench: Bench, tokens: int, device: torch.device, tiny: bool) -> dict[str, Any]:
    peak_mem_reset(device)
    seconds = timed(bench.step, device, warmup=1 if tiny else 3, repeats=2 if tiny else 6)
    tps = tokens / seconds
    return {
        "step_s": seconds,
        "tokens_per_s": tps,
        "model_flops_per_s": tps * bench.fpt,
        "peak_mem_gib": peak_mem_gib(device),
    }


def largest_batch(sec, preset, kind, seq, vocab, device, start, limit) -> int | None:
    """Doubling search: the largest power-of-two batch whose training step fits in memory."""
    best, batch = None, start
    while batch <= limit and sec.left() > 0:
        try:
            bench = build_bench(preset, kind, batch, seq, vocab, device)
            bench.step()
            best = batch
        except torch.OutOfMemoryError:
            break
        finally:
            bench = None
            peak_mem_reset(device)
        batch *= 2
    return best


def throughput_section(sec: Section, device: torch.device, tiny: bool) -> None:
    """Tokens/s, model FLOP/s, MFU and peak memory per preset x objective x eager/compile.

    Eager cells of every preset first (cheap), then compiled cells, 350m AR first (the MFU
    target). Compiling is per block (``Block.compile()``, as ``fsdp.py`` does for sharded
    runs): one graph reused by every layer, so a 350m compiles in seconds, not minutes.
    """
    seq, vocab = (64, 512) if tiny else (2048, 50304)
    presets = ("tiny",) if tiny else ("350m", "125m")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    mm = matmul_flops(device, 512 if tiny else 8192, dtype)
    sec.record("matmul_flops_per_s", mm)
    sec.record("matmul", f"{'512' if tiny else '8192'}^3 {dtype}, best of 10")
    sec.record("peak_flops_per_s", H200_BF16_DENSE_PEAK if device.type == "cuda" else None)
    sec.record("seq_len_vocab", [seq, vocab])
    sec.record("compile_scope", "per block; backend " + ("eager (tiny)" if tiny else "inductor"))
    batches: dict[str, int] = {}
    for preset in presets:
        # One batch per preset for both objectives (equal settings; their memory is the same).
        try:
            batch = largest_batch(
                sec, preset, "dlm", seq, vocab, device, 1 if tiny else 4, 2 if tiny else 64
            )
        except Exception as err:  # noqa: BLE001 - recorded, the next preset still runs
            sec.record(f"{preset}_batch", {"error": f"{type(err).__name__}: {str(err)[:300]}"})
            continue
        sec.record(f"{preset}_batch", batch)
        if batch is not None:
            batches[preset] = batch
    for mode in ("eager", "compile"):
        for preset, batch in batches.items():
            for kind in ("ar", "dlm"):
                key = f"{preset}_{kind}_{mode}"
                if sec.left() < (0 if tiny or mode == "eager" else 45):
                    sec.record(key, {"skipped": "section time box reached"})
                    continue
                try:
                    row = _throughput_cell(preset, kind, batch, seq, vocab, device, tiny, mode)
                    row["mfu_vs_matmul"] = row["model_flops_per_s"] / mm
                    sec.record(key, row)
                except Exception as err:  # noqa: BLE001 - recorded, the other cells still run
                    sec.record(key, {"error": f"{type(err).__name__}: {str(err)[:300]}"})
                finally:
                    peak_mem_reset(device)


def _throughput_cell(preset, kind, batch, seq, vocab, device, tiny, mode) -> dict[str, Any]:
    cfg = model_preset(preset, vocab, seq)
    bench = build_bench(
        preset, kind, batch, seq, vocab, device,
        compile=mode == "compile", compile_backend="eager" if tiny else "inductor",
    )  # fmt: skip
    t0 = time.perf_counter()
    bench.step()  # the first step compiles (or warms cuBLAS): timed apart
    sync(device)
    first_step_s = time.perf_counter() - t0
    got = _measure(bench, batch * seq, device, tiny)
    on_cuda = device.type == "cuda"
    return {
        "batch": batch,
        "params_non_embedding": param_counts(cfg)["non_embedding"],
        "flops_per_token": bench.fpt,
        "first_step_s": first_step_s,
        **got,
        "mfu_vs_peak": got["model_flops_per_s"] / H200_BF16_DENSE_PEAK if on_cuda else None,
    }


# --- (c) fused linear + cross-entropy ----------------------------------------------------------
def _ce_case(impl, h, w, targets, weights, device):
    peak_mem_reset(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    hh, ww = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = linear_cross_entropy(hh, ww, targets, weights, impl)
    loss.backward()
    extra = (
        (torch.cuda.max_memory_allocated(device) - base) / 2**30
        if base or device.type == "cuda"
        else None
    )
    return loss.detach().float(), hh.grad.float(), ww.grad.float(), extra


def fused_ce_section(sec: Section, device: torch.device, tiny: bool) -> None:
    """Plain vs chunked vs liger LM head + CE: agreement with an fp32 reference, time, memory."""
    N, d, V = (128, 32, 500) if tiny else (16384, 1024, 50304)  # 8 x 2048 tokens at V = 50K
    sec.record("shape_NdV", [N, d, V])
    gen = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(N, d, device=device, generator=gen)
    w = torch.randn(V, d, device=device, generator=gen) * d**-0.5
    targets = torch.randint(0, V, (N,), device=device, generator=gen)
    # DLM-like weights: masked with probability t per token, weight 1 / (t * N).
    t = torch.rand(N, device=device, generator=gen).clamp_min(0.05)
    weights = (torch.rand(N, device=device, generator=gen) < t) / (t * N)
    ref_h, ref_w = h.double(), w.double().requires_grad_()
    ref_h.requires_grad_()
    ref = (F.cross_entropy(ref_h @ ref_w.T, targets, reduction="none") * weights).sum()
    ref.backward()
    impls = ["plain", "chunked"]
    if device.type == "cuda" and liger_available():
        impls.append("liger")
    else:
        sec.record("liger", {"skipped": "needs CUDA and liger-kernel"})
    for impl in impls:
        try:
            loss, gh, gw, extra = _ce_case(impl, h, w, targets, weights, device)
            ms = 1e3 * timed(
                lambda i=impl: _ce_case(i, h, w, targets, weights, device),
                device,
                1,
                2 if tiny else 5,
            )
            sec.record(
                impl,
                {
                    "loss": float(loss),
                    "loss_abs_err": float(abs(loss.double() - ref.detach())),
                    "grad_h_max_abs_err": float((gh.double() - ref_h.grad).abs().max()),
                    "grad_w_max_abs_err": float((gw.double() - ref_w.grad).abs().max()),
                    "grad_w_ref_max_abs": float(ref_w.grad.abs().max()),
                    "fwd_bwd_ms": ms,
                    "peak_extra_mem_gib": extra,
                },
            )
        except Exception as err:  # noqa: BLE001
            sec.record(impl, {"error": f"{type(err).__name__}: {str(err)[:300]}"})
    model_level_ce(sec, device, tiny, impls)


def model_level_ce(sec: Section, device: torch.device, tiny: bool, impls: list[str]) -> None:
    """A whole training step of 125m at vocab 50K per loss_impl: step time and peak memory."""
    preset, batch, seq, vocab = ("tiny", 2, 64, 512) if tiny else ("125m", 8, 2048, 50304)
    for kind in ("ar", "dlm"):
        for impl in impls:
            key = f"step_{preset}_{kind}_{impl}"
            if sec.left() < 0:
                sec.record(key, {"skipped": "section time box reached"})
                continue
            try:
                bench = build_bench(preset, kind, batch, seq, vocab, device, loss=impl)
                sec.record(key, {"batch": batch, **_measure(bench, batch * seq, device, tiny)})
            except Exception as err:  # noqa: BLE001
                sec.record(key, {"error": f"{type(err).__name__}: {str(err)[:300]}"})
            finally:
                bench = None
                peak_mem_reset(device)
