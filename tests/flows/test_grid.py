"""Grid expansion: the three epoch designs, stable run ids, manifests vs provisional plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.grid import expand_grid, format_grid
from flows.spec import parse_spec
from pipeline.manifest import BudgetManifest
from training_core.flops import flops_per_token

BASE = {"name": "t", "budgets": {"sizes": [1000, 4000]}, "models": ["tiny", "xs"]}


def _manifest(tmp: Path, unique: int, vocab: int = 300) -> BudgetManifest:
    return BudgetManifest(
        budget_id=f"b{unique}",
        spec_hash="h",
        requested_tokens=unique,
        unique_tokens=unique + 7,  # exact counts differ from requests (whole documents)
        n_documents=3,
        token_dtype="uint16",
        vocab_size=vocab,
        eos_id=0,
        tokenizer_path=str(tmp / "tokenizer.json"),
        tokenizer_sha256="0",
        train_files=[str(tmp / f"train_{unique}.ds")],
        val_files=[str(tmp / "val.ds")],
        val_tokens=100,
        eval_mc_path=str(tmp / "eval_mc.parquet"),
        content_sha256="0",
        seed=0,
        source_stats={},
        filter_stats={},
        created_at="2026-01-01T00:00:00Z",
    )


def test_epochs_list_is_the_full_cross_product() -> None:
    spec = parse_spec({**BASE, "epochs": [1, 4, 16], "seeds": [0, 1]})
    runs = expand_grid(spec)
    # 2 objectives x 2 models x 2 budgets x 3 epochs x 2 seeds
    assert len(runs) == 48
    assert len({r.run_id for r in runs}) == 48
    assert {r.epochs for r in runs} == {1, 4, 16}
    assert all(r.provisional for r in runs)
    assert runs[0].label == "ar/tiny/1K/ep1/s0"


def test_total_tokens_split_across_budgets(tmp_path: Path) -> None:
    spec = parse_spec({**BASE, "models": ["tiny"], "total_tokens": 96_000})
    manifests = [_manifest(tmp_path, 1000), _manifest(tmp_path, 4000)]
    runs = expand_grid(spec, manifests)
    assert len(runs) == 4
    for run in runs:
        # The seed paper's design: epochs = total / exact unique tokens of the built budget.
        assert run.epochs == pytest.approx(96_000 / run.unique_tokens)
        assert run.unique_tokens * run.epochs == pytest.approx(96_000)
        assert not run.provisional
        assert run.config.data.train_files == (str(tmp_path / f"train_{run.unique_tokens - 7}.ds"),)
        # The embedding carries the DLM mask token as one extra row.
        assert run.config.model.vocab_size == 301


def test_compute_budget_per_model(tmp_path: Path) -> None:
    flops = {"tiny": 1e12, "xs": 4e12}
    spec = parse_spec({**BASE, "compute_flops": flops})
    runs = expand_grid(spec, [_manifest(tmp_path, 1000), _manifest(tmp_path, 4000)])
    for run in runs:
        fpt = flops_per_token(run.config.model, causal=False)
        assert run.epochs * run.unique_tokens * fpt == pytest.approx(flops[run.model_name])


def test_run_ids_are_stable_and_follow_the_config(tmp_path: Path) -> None:
    spec = parse_spec({**BASE, "epochs": [2]})
    manifests = [_manifest(tmp_path, 1000), _manifest(tmp_path, 4000)]
    first = [r.run_id for r in expand_grid(spec, manifests)]
    assert first == [r.run_id for r in expand_grid(spec, manifests)]
    assert first == [r.config.run_id for r in expand_grid(spec, manifests)]
    changed = parse_spec({**BASE, "epochs": [2], "optim": {"lr": 5e-4}})
    assert set(first).isdisjoint(r.run_id for r in expand_grid(changed, manifests))
    # Threads change speed only: same ids, so a rerun on another machine finds the runs.
    threaded = parse_spec({**BASE, "epochs": [2], "resources": {"default": {"cpus": 4}}})
    assert first == [r.run_id for r in expand_grid(threaded, manifests)]


def test_resources_by_model_size_reach_the_tasks(tmp_path: Path) -> None:
    resources = {"default": {"cpus": 1}, "per_model": {"xs": {"cpus": 2, "gpus": 1}}}
    spec = parse_spec({**BASE, "epochs": [1], "resources": resources})
    tasks = [r.task(tmp_path) for r in expand_grid(spec)]
    by_model = {t.label.split("/")[1]: (t.cpus, t.gpus) for t in tasks}
    assert by_model == {"tiny": (1.0, 0.0), "xs": (2.0, 1.0)}
    assert all(t.run_dir == tmp_path / t.run_id for t in tasks)


def test_dry_run_table_totals_flops_and_prices_gpu_runs() -> None:
    # Two epoch levels: a table that dropped the epochs factor would price both alike.
    spec = parse_spec({**BASE, "epochs": [1, 4], "resources": {"default": {"gpus": 1}}})
    runs = expand_grid(spec)
    text = format_grid(runs)
    assert f"{len(runs)} runs, {sum(r.flops for r in runs):.3e} training FLOPs" in text
    assert "H100 GPU-hours" in text
    assert "provisional" in text
    for run in runs:
        assert run.run_id in text
        causal = run.objective == "ar"
        fpt = flops_per_token(run.config.model, causal=causal)
        assert run.flops == pytest.approx(fpt * run.unique_tokens * run.epochs)
    by_epochs = {(r.objective, r.model_name, r.unique_tokens, r.epochs): r.flops for r in runs}
    for (objective, model, unique, epochs), flops in by_epochs.items():
        if epochs == 4:
            assert flops == pytest.approx(4 * by_epochs[(objective, model, unique, 1)])


def test_dry_run_shows_what_evaluation_branches_cost() -> None:
    # tiny, 1000 tokens / seq 128 = 7 windows, batch 1, 10 epochs: 70 steps, WSD decay from 56;
    # evals after epochs 2, 4, 6 fork at steps 14, 28, 42 and cool down for 3, 6, 8 steps.
    spec = parse_spec(
        {
            **BASE,
            "budgets": {"sizes": [1000]},
            "models": ["tiny"],
            "objectives": ["ar"],
            "epochs": [10],
            "optim": {"schedule": "wsd", "batch_size": 1},
            "eval": {"every_epochs": 2, "branches": True, "cooldown_fraction": 0.2},
        }
    )
    (run,) = expand_grid(spec)
    per_step = flops_per_token(run.config.model, causal=True) * 128
    assert run.branch_flops == pytest.approx(per_step * (3 + 6 + 8))
    assert run.replaced_flops == pytest.approx(per_step * (17 + 34 + 50))
    text = format_grid([run])
    assert f"evaluation branches: +{run.branch_flops:.3e} FLOPs" in text
    assert f"would cost {run.replaced_flops:.3e} FLOPs" in text
    plain = expand_grid(
        spec.model_copy(update={"eval": spec.eval.model_copy(update={"branches": False})})
    )
    assert plain[0].branch_flops == 0 and "evaluation branches" not in format_grid(plain)


def test_torch_threads_setting_reaches_every_run_and_keeps_the_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.settings import get_settings

    monkeypatch.setenv("CROSSOVER_TORCH_THREADS", "3")
    threads = get_settings().torch_threads  # what the sweep flow passes
    assert threads == 3
    spec = parse_spec({**BASE, "epochs": [2], "resources": {"default": {"cpus": 2}}})
    plain, threaded = expand_grid(spec), expand_grid(spec, torch_threads=threads)
    assert {r.config.threads for r in plain} == {2}  # default: the run's cpus
    assert {r.config.threads for r in threaded} == {3}
    assert [r.run_id for r in plain] == [r.run_id for r in threaded]
