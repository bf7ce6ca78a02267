"""HellaSwag-style multiple choice from held-out documents, stored as eval_mc.parquet.

Each item: `context_tokens` tokens of a held-out document, its true next `continuation_tokens`
tokens, and `n_distractors` windows of exactly the same length drawn from OTHER held-out
documents (length-matched, so a model cannot win by scoring length).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.spec import EvalSetSpec

_RESAMPLE_TRIES = 8  # redraw a distractor window that equals the true continuation


def _doc_spans(
    doc_ends: np.ndarray, tokens: np.ndarray, eos_id: int | None
) -> list[tuple[int, int]]:
    """(start, end) of each document, excluding its trailing EOS."""
    spans, start = [], 0
    for end in doc_ends.tolist():
        stop = end - 1 if eos_id is not None and end > start and tokens[end - 1] == eos_id else end
        spans.append((start, stop))
        start = end
    return spans


def build_eval_items(
    tokens: np.ndarray, doc_ends: np.ndarray, eos_id: int | None, cfg: EvalSetSpec, seed: int
) -> list[dict]:
    """Items as dicts of int lists; deterministic for (tokens, cfg, seed)."""
    ctx, cont, k = cfg.context_tokens, cfg.continuation_tokens, cfg.n_distractors
    spans = _doc_spans(doc_ends, tokens, eos_id)
    eligible = [s for s in spans if s[1] - s[0] >= ctx + cont]
    if len(eligible) < k + 1:
        raise PipelineError(
            f"eval_set needs at least n_distractors+1={k + 1} held-out documents of "
            f">= context_tokens+continuation_tokens={ctx + cont} tokens; found {len(eligible)} "
            f"(of {len(spans)} held-out documents). Raise heldout_fraction or shorten the windows."
        )
    rng = np.random.default_rng(seed)
    # Documents in a seeded order, cycled when there are fewer documents than items: a long
    # held-out document then gives several items at different random offsets.
    order = rng.permutation(len(eligible)).tolist()
    picks = [order[i % len(order)] for i in range(cfg.n_items)]
    items = []
    for item_id, d in enumerate(picks):
        start, stop = eligible[d]
        s = start + int(rng.integers(0, stop - start - ctx - cont + 1))
        context = tokens[s : s + ctx].tolist()
        true = tokens[s + ctx : s + ctx + cont].tolist()
        others = rng.choice(np.delete(np.arange(len(eligible)), d), size=k, replace=False)
        distractors = []
        for o in others.tolist():
            o_start, o_stop = eligible[o]
            for _ in range(_RESAMPLE_TRIES):
                w = o_start + int(rng.integers(0, o_stop - o_start - cont + 1))
                window = tokens[w : w + cont].tolist()
                if window != true:
                    break
            distractors.append(window)
        label = int(rng.integers(0, k + 1))
        choices = distractors[:label] + [true] + distractors[label:]
        items.append({"item_id": item_id, "context": context, "choices": choices, "label": label})
    return items


def write_eval_set(items: list[dict], tokenizer_path: Path, out_path: Path) -> int:
    """Write eval_mc.parquet (design.md columns); returns the number of items."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    table = pa.table(
        {
            "item_id": pa.array([it["item_id"] for it in items], pa.int64()),
            "context": pa.array([it["context"] for it in items], pa.list_(pa.int32())),
            "choices": pa.array([it["choices"] for it in items], pa.list_(pa.list_(pa.int32()))),
            "label": pa.array([it["label"] for it in items], pa.int64()),
            "context_text": [tok.decode(it["context"], skip_special_tokens=False) for it in items],
            "choices_text": pa.array(
                [tok.decode_batch(it["choices"], skip_special_tokens=False) for it in items],
                pa.list_(pa.string()),
            ),
        }
    )
    pq.write_table(table, out_path)
    return len(items)
