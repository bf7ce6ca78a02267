"""Synthetic studies from known laws, written by the production writers, and law points.

Used by the tests (known truth to recover) and the benchmark. Each run is a valid
``training_core.RunConfig`` (its ``run_id`` names the directory) and its files are written with
``formats.run_dir`` (the trainer's own writers), so analysis tests read the production shape.
Losses: the final evaluation of a run is ``data_constrained_loss`` with the objective's
``LawParams`` times log-normal noise; a mid-run evaluation at fraction f of the run's steps sits
above the law at its token count by ``unannealed_gap * (1 + cos(pi f)) / 2`` (relative), the cosine
learning rate not yet decayed, so a law fit on mid-run points is visibly biased. Every run also
gets one seed effect (log-normal, ``seed_noise``) shared by all its evaluations, the run-to-run
spread real seeds show. Accuracy is a logistic function of the noiseless law loss, drawn as a
binomial over ``mc_n`` items. ``ar_overfit`` adds a loss rise after 4 epochs to AR's validation
loss only: the "val loss rises while accuracy still improves" pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.laws import MUENNIGHOFF_2023, LawParams, data_constrained_loss
from formats import run_dir as run_io
from formats.budget import MANIFEST_NAME, BudgetManifest, budget_dir, write_manifest

# DLM: 30% worse per unique token, but repeated data keeps its value far longer (R_D* 500).
# The two laws cross at ~31 epochs for N = 1e7, U = 1e9 and ~51 for N = 1e8, U = 1e9
# (the larger B also lowers DLM's N_opt(U), so excess parameters cost it more).
DLM_EXAMPLE = MUENNIGHOFF_2023.with_(B=MUENNIGHOFF_2023.B * 1.3, rd_star=500.0)
_VOCAB = 2048


@dataclass(frozen=True)
class SyntheticStudySpec:
    """The grid and the truth a synthetic study is drawn from."""

    n_params: tuple[int, ...] = (100_000_000,)
    unique_tokens: tuple[int, ...] = (100_000_000, 300_000_000, 1_000_000_000)
    epochs: tuple[float, ...] = (1.0, 4.0, 16.0, 32.0, 64.0)
    seeds: tuple[int, ...] = (0,)
    laws: dict[str, LawParams] = field(
        default_factory=lambda: {"ar": MUENNIGHOFF_2023, "dlm": DLM_EXAMPLE}
    )
    noise: float = 0.003
    seed_noise: float = 0.0
    unannealed_gap: float = 0.03
    evals_per_run: int = 6
    metric_rows_per_run: int = 8
    ar_overfit: float = 0.0
    n_failed: int = 0
    mc_n: int = 2000
    acc_center: float = 3.3
    acc_scale: float = 0.25
    rng_seed: int = 1234


def accuracy_from_loss(loss: np.ndarray, center: float, scale: float) -> np.ndarray:
    """Four-way multiple choice: 0.25 at high loss, rising to 0.85 as loss falls below center."""
    z = np.clip((loss - center) / scale, -50.0, 50.0)  # avoid exp overflow far from center
    return 0.25 + 0.6 / (1.0 + np.exp(z))


def eval_epochs(epochs: float, n: int) -> np.ndarray:
    """Evaluation points: three in the first epoch, then log-spaced to the end."""
    first = np.array([0.25, 0.5, 1.0]) * min(epochs, 1.0)
    rest = np.geomspace(1.0, epochs, max(n - 2, 2))[1:] if epochs > 1 else np.array([])
    return np.unique(np.concatenate([first, rest]))


def law_points(
    law: LawParams,
    n_params: tuple[float, ...],
    unique_tokens: tuple[float, ...],
    epochs: tuple[float, ...],
    *,
    seeds: tuple[int, ...] = (0,),
    noise: float = 0.003,
    seed: int = 0,
) -> pd.DataFrame:
    """Law-fit input as a study produces it: the final loss of each (N, U, epochs, seed) run,
    the law times log-normal noise of relative size ``noise``."""
    rng = np.random.default_rng(seed)
    rows = [
        (f"N{n:g}-U{u:g}-E{e:g}-s{s}", n, e * u, u)
        for n in n_params
        for u in unique_tokens
        for e in epochs
        for s in seeds
    ]
    frame = pd.DataFrame(rows, columns=["run_id", "n_params", "tokens", "unique_tokens"])
    clean = data_constrained_loss(frame["n_params"], frame["tokens"], frame["unique_tokens"], law)
    frame["loss"] = clean * np.exp(noise * rng.standard_normal(len(frame)))
    return frame


def run_config(obj: str, n: int, u: int, epochs: float, seed: int):  # -> RunConfig
    """A valid ``RunConfig`` for one synthetic run (tiny model shape; the law's N is what the
    run's result reports). Imported lazily: analysis itself never needs training_core."""
    from training_core.config import DataConfig, RunConfig
    from training_core.model import ModelConfig
    from training_core.objectives import ObjectiveConfig

    model = ModelConfig(
        name=f"n{n:g}",
        vocab_size=_VOCAB + 1,
        seq_len=128,
        depth=2,
        d_model=64,
        n_heads=4,
        ffn_hidden=128,
    )
    data = DataConfig(
        train_files=(f"budgets/budget_{u}/000.ds",),
        vocab_size=_VOCAB,
        unique_tokens=u,
        budget_id=f"budget_{u}",
    )
    return RunConfig(
        model=model,
        objective=ObjectiveConfig(kind=obj),
        data=data,
        epochs=float(epochs),
        seed=seed,
        device="cpu",
    )


def _losses(spec: SyntheticStudySpec, cfg, n: int, rng: np.random.Generator) -> tuple:
    obj, u = cfg.objective.kind, cfg.data.unique_tokens
    ep = eval_epochs(cfg.epochs, spec.evals_per_run)
    tokens = np.round(ep * u).astype(np.int64)
    clean = data_constrained_loss(n, tokens, u, spec.laws[obj])
    frac = ep / cfg.epochs  # fraction of the run's steps done at each evaluation
    gap = 1.0 + spec.unannealed_gap * 0.5 * (1.0 + np.cos(np.pi * frac))
    seed_effect = np.exp(spec.seed_noise * rng.standard_normal())
    val = clean * gap * seed_effect * np.exp(spec.noise * rng.standard_normal(len(ep)))
    if obj == "ar" and spec.ar_overfit:
        val = val + spec.ar_overfit * np.log1p(np.maximum(ep - 4.0, 0.0))
    acc = rng.binomial(spec.mc_n, accuracy_from_loss(clean, spec.acc_center, spec.acc_scale))
    return ep, tokens, clean, val, acc / spec.mc_n


def _write_run(root: Path, spec: SyntheticStudySpec, cfg, n: int, rng, failed: bool) -> Path:
    """One run dir; ``n`` is the law's parameter count the result reports."""
    obj, u = cfg.objective.kind, cfg.data.unique_tokens
    run_dir = root / run_io.RUNS_DIR / cfg.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    run_io.write_json(run_dir / run_io.CONFIG_FILE, cfg.model_dump(mode="json"))
    ep, tokens, clean, val, acc = _losses(spec, cfg, n, rng)
    if failed:
        val[-1] = np.nan
    steps = np.arange(1, len(ep) + 1) * 100
    evals = pd.DataFrame(
        {
            "run_id": cfg.run_id,
            "step": steps,
            "tokens_seen": tokens,
            "epoch": ep,
            "flops": 6.0 * n * tokens,
            "val_loss": val,
            "val_loss_se": spec.noise * clean,
            "mc_acc": acc,
            "mc_margin": acc - 0.25,
            "mc_n": spec.mc_n,
        }
    )
    run_io.write_rows(run_dir / run_io.EVALS_FILE, evals.to_dict("records"), run_io.EVALS_SCHEMA)
    m_ep = np.linspace(ep[-1] / spec.metric_rows_per_run, ep[-1], spec.metric_rows_per_run)
    metrics = pd.DataFrame(
        {
            "run_id": cfg.run_id,
            "step": np.arange(1, len(m_ep) + 1) * 50,
            "tokens_seen": np.round(m_ep * u).astype(np.int64),
            "epoch": m_ep,
            "train_loss": data_constrained_loss(n, m_ep * u, u, spec.laws[obj]) * 0.98,
            "lr": 2e-3,
            "grad_norm": 1.0,
            "tokens_per_s": 1e4,
        }
    )
    run_io.write_rows(
        run_dir / run_io.METRICS_FILE, metrics.to_dict("records"), run_io.METRICS_SCHEMA
    )
    finite = np.isfinite(val)
    result = run_io.RunResult(
        run_id=cfg.run_id,
        status="failed" if failed else "completed",
        failure_reason=f"non-finite loss at step {steps[-1]}" if failed else None,
        objective=obj,
        model_name=cfg.model.name,
        n_params=n,
        n_params_nonembed=int(n * 0.8),
        n_params_active=n,
        flops_per_token=6.0 * n,
        unique_tokens=u,
        epochs=cfg.epochs,
        seed=cfg.seed,
        budget_id=cfg.data.budget_id,
        steps=int(steps[-1]),
        tokens_seen=int(tokens[-1]),
        total_flops=float(6.0 * n * tokens[-1]),
        final_val_loss=float(val[-1]) if finite[-1] else None,
        best_val_loss=float(val[finite].min()),
        final_mc_acc=float(acc[-1]),
        best_mc_acc=float(acc.max()),
        wall_s=1.0,
        tokens_per_s=1e4,
        started_at="2026-01-01T00:00:00",
        finished_at="2026-01-01T00:01:00",
        code_version="synthetic",
    )
    run_io.write_result(run_dir, result)
    return run_dir


def write_synthetic_study(root: str | Path, spec: SyntheticStudySpec | None = None) -> list[Path]:
    """Write ``root/runs/<run_id>/{config.json, metrics.parquet, evals.parquet, result.json}``
    for the whole grid, plus ``n_failed`` failed runs (their last evaluation is NaN)."""
    spec = spec or SyntheticStudySpec()
    root = Path(root)
    rng = np.random.default_rng(spec.rng_seed)
    dirs = []
    for obj in spec.laws:
        for n in spec.n_params:
            for u in spec.unique_tokens:
                for e in spec.epochs:
                    for s in spec.seeds:
                        cfg = run_config(obj, n, u, e, s)
                        dirs.append(_write_run(root, spec, cfg, n, rng, False))
    for i in range(spec.n_failed):
        cfg = run_config("ar", spec.n_params[0], spec.unique_tokens[0], spec.epochs[-1], 1000 + i)
        dirs.append(_write_run(root, spec, cfg, spec.n_params[0], rng, True))
    return dirs


def write_synthetic_manifests(
    root: str | Path, spec: SyntheticStudySpec | None = None
) -> list[Path]:
    """One ``manifest.json`` per budget, with the fields of the pipeline's BudgetManifest."""
    spec = spec or SyntheticStudySpec()
    paths = []
    for u in spec.unique_tokens:
        path = budget_dir(Path(root) / "budgets" / "spec0", u) / MANIFEST_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest = BudgetManifest(
            **{
                "budget_id": f"budget_{u}",
                "spec_hash": "spec0",
                "requested_tokens": u,
                "unique_tokens": u,
                "n_documents": u // 1000,
                "token_dtype": "uint16",
                "vocab_size": 2048,
                "eos_id": 0,
                "tokenizer_path": "/tok/tokenizer.json",
                "tokenizer_sha256": "0" * 64,
                "train_files": [f"/b/{u}/000.ds"],
                "val_files": ["/b/val.ds"],
                "val_tokens": 32768,
                "eval_mc_path": "/b/eval_mc.parquet",
                "content_sha256": "1" * 64,
                "seed": 0,
                "source_stats": {"docs": u // 1000},
                "filter_stats": {"dropped": 0},
                "created_at": "2026-01-01T00:00:00+00:00",
            }
        )
        write_manifest(manifest, path)
        paths.append(path)
    return paths
