"""`budgets build ...`: build nested unique-token budgets from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from formats.budget import MANIFEST_NAME
from pipeline.errors import OneLineArgumentParser, PipelineError, describe_validation_error
from pipeline.spec import BudgetSpec


def _sizes(text: str) -> tuple[int, ...]:
    sizes = []
    for part in filter(None, (s.strip() for s in text.split(","))):
        try:
            value = float(part)
        except ValueError:
            value = 0.0
        if value < 1 or value != int(value):
            raise argparse.ArgumentTypeError(
                f"wants comma-separated positive integers (e.g. 100000,4e5), "
                f"got {part!r} in {text!r}"
            )
        sizes.append(int(value))
    if not sizes:
        raise argparse.ArgumentTypeError(f"wants at least one size, got {text!r}")
    return tuple(sizes)


def _infer_kind(corpus: str) -> str:
    if corpus == "stdlib":
        return "stdlib"
    if corpus.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst")):
        return "jsonl"
    if corpus.endswith(".parquet"):
        return "parquet"
    return "files"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="budgets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or reuse) the budgets of a spec")
    b.add_argument("--sizes", type=_sizes, required=True, help="e.g. 100000,400000")
    b.add_argument("--corpus", default="stdlib", help="'stdlib', a .jsonl/.parquet file or a dir")
    b.add_argument("--kind", choices=["stdlib", "jsonl", "parquet", "files"], default=None)
    b.add_argument("--glob", default=None, help="file glob under a directory corpus")
    b.add_argument("--text-key", default="text")
    b.add_argument(
        "--on-bad-record",
        choices=["skip", "fail"],
        default=None,
        help="unreadable record: fail naming file:line, or skip and count it "
        "(default: fail for jsonl/parquet, skip for source trees)",
    )
    b.add_argument("--site-packages", action="store_true", help="stdlib: add installed packages")
    b.add_argument("--max-files", type=int, default=None)
    b.add_argument("--max-bytes", type=int, default=None)
    b.add_argument("--vocab", type=int, default=2048)
    b.add_argument("--tokenizer", type=Path, default=None, help="local tokenizer.json")
    b.add_argument("--heldout", type=float, default=0.05, help="held-out fraction")
    b.add_argument("--eval-items", type=int, default=200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--root", type=Path, default=None, help="budgets dir (default: settings)")
    b.add_argument("--spec", type=Path, default=None, help="JSON BudgetSpec (overrides flags)")
    return parser


def spec_from_args(args: argparse.Namespace) -> BudgetSpec:
    """The spec of a command line; bad values raise `PipelineError` naming the field."""
    try:
        return _spec_from_args(args)
    except ValidationError as err:
        where = f"{args.spec}: " if args.spec is not None else ""
        lines = describe_validation_error(err, BudgetSpec).replace("\n", f"\n{where}")
        raise PipelineError(f"{where}{lines}") from None


def _spec_from_args(args: argparse.Namespace) -> BudgetSpec:
    if args.spec is not None:
        try:
            text = args.spec.read_text()
        except OSError as err:
            raise PipelineError(f"--spec {args.spec}: {err.strerror or err}") from None
        return BudgetSpec.model_validate_json(text)
    kind = args.kind or _infer_kind(args.corpus)
    source = {
        "kind": kind,
        "path": None if kind == "stdlib" else args.corpus,
        "glob": args.glob,
        "text_key": args.text_key,
        "on_bad_record": args.on_bad_record,
        "include_site_packages": args.site_packages,
        "max_files": args.max_files,
        "max_bytes": args.max_bytes,
    }
    return BudgetSpec(
        source=source,
        sizes=args.sizes,
        heldout_fraction=args.heldout,
        tokenizer={"vocab_size": args.vocab, "path": args.tokenizer},
        eval_set={"n_items": args.eval_items},
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    from pipeline.settings import apply_offline_defaults

    apply_offline_defaults()
    args = build_parser().parse_args(argv)
    from pipeline.budgets import build_budgets

    try:
        spec = spec_from_args(args)
        print(f"spec {spec.spec_hash}: sizes {list(spec.sizes)}, source {spec.source.kind}")
        manifests = build_budgets(spec, root=args.root, progress=lambda m: print(f"  {m}"))
    except (PipelineError, ValueError) as err:
        print(f"budgets: {err}", file=sys.stderr)
        return 2
    for m in manifests:
        summary = {
            "budget_id": m.budget_id,
            "requested": m.requested_tokens,
            "unique_tokens": m.unique_tokens,
            "documents": m.n_documents,
            "val_tokens": m.val_tokens,
            "vocab": m.vocab_size,
            "manifest": str(Path(m.train_files[0]).parent / MANIFEST_NAME),
        }
        print(json.dumps(summary))
    m = manifests[-1]
    bad_records = m.source_stats.get("bad_records", {})
    print(f"source: {json.dumps({k: v for k, v in m.source_stats.items() if k != 'bad_records'})}")
    from pipeline.readers import format_bad_records

    for line in format_bad_records(bad_records):
        print(line)
    print(f"filters: {json.dumps(m.filter_stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
