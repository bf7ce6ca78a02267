"""The GPU mini-study's payload: prepared on the CPU, trained on the device, ingested back.

Three steps, each one command (bench/RESULTS.md "GPU (H200)"):

1. ``prepare`` (CPU, ~1-2 min): builds the study's budgets with the real pipeline under
   ``<payload>/home/budgets`` and writes ``<payload>/runs.json``: the RunConfigs that
   ``flows run sweep`` would dispatch for that study (``flows.grid.expand_grid``, same run ids).
2. ``bench/gpu_check.py`` (device): trains those RunConfigs with ``train_run`` and packs the run
   directories (config.json, metrics.parquet, evals.parquet, result.json; no checkpoint) into
   one tar.gz with a ``payload.json`` naming the home it trained from.
3. ``ingest`` (CPU): unpacks the tar into ``<home>/<study>/runs/<run_id>``; then
   ``flows run report`` builds the DuckDB and the report as for any study.

Run ids hash the config, data paths included, and the device sees the payload under another
absolute path. So the device trains each config with its data paths moved to where the payload
lies there (same files, same bytes), and ``ingest`` moves them back: the relocated config must
hash to a run id of runs.json, else the run is refused. Nothing else in a config changes.

    PYTHONPATH=. .venv/bin/python bench/gpu_payload.py prepare --preset gpu-mini
    PYTHONPATH=. .venv/bin/python bench/gpu_payload.py ingest --tar DIR/mini_study.tar.gz
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PAYLOAD = REPO / "bench" / "out" / "gpu_payload"
RUNS_FILE, PAYLOAD_FILE = "runs.json", "payload.json"
RUN_FILES = ("config.json", "metrics.parquet", "evals.parquet", "result.json")
_PATH_FIELDS = ("train_files", "val_files", "eval_mc_path")


def relocate(config: dict[str, Any], old_home: str, new_home: str) -> dict[str, Any]:
    """``config`` (RunConfig JSON) with every data path under ``old_home`` moved to ``new_home``."""

    def move(key: str, path: str) -> str:
        if not Path(path).is_relative_to(old_home):
            raise ValueError(f"data.{key}: {path} is not under the payload home {old_home}")
        return str(Path(new_home) / Path(path).relative_to(old_home))

    data = dict(config["data"])
    for key in _PATH_FIELDS:
        value = data.get(key)
        if isinstance(value, list | tuple):
            data[key] = [move(key, p) for p in value]
        elif isinstance(value, str):
            data[key] = move(key, value)
    return {**config, "data": data}


def prepare(spec_path: str | None, preset: str | None, payload: Path) -> dict[str, Any]:
    """Build the budgets under ``payload/home`` and write runs.json; returns its content."""
    from flows.flows import StudyPaths, build_budgets_task, resolve_spec
    from flows.grid import expand_grid

    spec = resolve_spec(preset, spec_path)
    paths = StudyPaths.of(spec, payload / "home")
    manifests = build_budgets_task.fn(spec, paths.home)
    runs = expand_grid(spec, manifests)
    # Pairs of one budget next to each other, smallest budget first: a device check cut short
    # still leaves matched AR/DLM pairs, at the budgets where AR overfits most.
    runs.sort(key=lambda r: (r.unique_tokens, r.objective))
    content = {
        "study": spec.name,
        "spec": f"--config {Path(spec_path).resolve()}" if spec_path else f"--preset {preset}",
        "home": str(paths.home),
        "runs": [
            {"run_id": r.run_id, "label": r.label, "config": r.config.model_dump(mode="json")}
            for r in runs
        ],
    }
    payload.mkdir(parents=True, exist_ok=True)
    (payload / RUNS_FILE).write_text(json.dumps(content, indent=1))
    return content


def load_runs(payload: Path) -> dict[str, Any]:
    path = payload / RUNS_FILE
    if not path.exists():
        raise FileNotFoundError(f"payload: {path} missing; run `bench/gpu_payload.py prepare`")
    return json.loads(path.read_text())


def pack_runs(run_dirs: list[Path], home: str, study: str, tar_path: Path) -> int:
    """Write the run directories (result files only) and payload.json into ``tar_path``."""
    tmp = tar_path.with_name(tar_path.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        meta = json.dumps({"home": home, "study": study}).encode()
        info = tarfile.TarInfo(PAYLOAD_FILE)
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        for run_dir in run_dirs:
            for name in RUN_FILES:
                if (run_dir / name).exists():
                    tar.add(run_dir / name, arcname=f"runs/{run_dir.name}/{name}")
    tmp.replace(tar_path)  # a kill mid-write leaves the previous complete tar
    return len(run_dirs)


def ingest(tar_path: Path, payload: Path) -> list[str]:
    """Unpack device runs into ``<home>/<study>/runs/<cpu run id>``; returns the run ids.

    Every run is checked before any is written: one foreign run refuses the whole tar.
    """
    from training_core.config import RunConfig

    prepared = load_runs(payload)
    known = {r["run_id"] for r in prepared["runs"]}
    runs_root = Path(prepared["home"]) / prepared["study"] / "runs"
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tar_path) as tar:
        tar.extractall(tmp, filter="data")
        meta = json.loads((Path(tmp) / PAYLOAD_FILE).read_text())
        checked = []
        for run_dir in sorted((Path(tmp) / "runs").iterdir()):
            raw = json.loads((run_dir / "config.json").read_text())
            cfg = RunConfig.model_validate(relocate(raw, meta["home"], prepared["home"]))
            if cfg.run_id not in known:
                raise ValueError(f"run {run_dir.name}: relocated id {cfg.run_id} not in runs.json")
            checked.append((run_dir, cfg))
        for run_dir, cfg in checked:
            _write_run(run_dir, cfg, runs_root / cfg.run_id)
    return [cfg.run_id for _, cfg in checked]


def _write_run(run_dir: Path, cfg: Any, dest: Path) -> None:
    """The device run's files under ``dest``, every run id rewritten to ``cfg.run_id``."""
    import pyarrow.parquet as pq

    if dest.exists():
        shutil.rmtree(dest)  # re-ingesting replaces, never duplicates
    dest.mkdir(parents=True)
    (dest / "config.json").write_text(cfg.model_dump_json(indent=2))
    if (run_dir / "result.json").exists():
        result = json.loads((run_dir / "result.json").read_text())
        (dest / "result.json").write_text(json.dumps({**result, "run_id": cfg.run_id}))
    for name in ("metrics.parquet", "evals.parquet"):
        if (run_dir / name).exists():
            table = pq.read_table(run_dir / name)
            col = table.schema.get_field_index("run_id")
            if col >= 0:
                table = table.set_column(col, "run_id", [[cfg.run_id] * table.num_rows])
            pq.write_table(table, dest / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="build budgets + runs.json (CPU)")
    group = prep.add_mutually_exclusive_group()
    group.add_argument("--preset", default=None, help="study preset (default: gpu-mini)")
    group.add_argument("--config", default=None, help="study YAML file")
    ing = sub.add_parser("ingest", help="unpack the device's tar into the study's runs/")
    ing.add_argument("--tar", required=True, type=Path)
    for p in (prep, ing):
        p.add_argument("--payload", type=Path, default=DEFAULT_PAYLOAD)
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        preset = args.preset if args.preset or args.config else "gpu-mini"
        content = prepare(args.config, preset, args.payload)
        for run in content["runs"]:
            print(f"{run['run_id']}  {run['label']}")
        print(f"{len(content['runs'])} runs -> {args.payload / RUNS_FILE}")
        return 0
    ids = ingest(args.tar, args.payload)
    prepared = load_runs(args.payload)
    print(f"ingested {len(ids)} runs into {Path(prepared['home']) / prepared['study'] / 'runs'}")
    print(
        f"next: CROSSOVER_HOME={prepared['home']} .venv/bin/python -m flows.cli run report "
        f"{prepared.get('spec', '--preset ' + prepared['study'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
