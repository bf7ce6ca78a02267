"""The multiple-choice eval set: items come from held-out documents, distractors from others."""

from __future__ import annotations

import numpy as np

from pipeline.evalset import build_eval_items
from pipeline.spec import EvalSetSpec


def _corpus(n_docs: int, doc_len: int) -> tuple[np.ndarray, np.ndarray]:
    # Each document d holds tokens d*1000 + (0..doc_len-1) then an EOS (id 0).
    docs = [np.append(np.arange(doc_len) + 1000 * (d + 1), 0) for d in range(n_docs)]
    tokens = np.concatenate(docs)
    return tokens, np.cumsum([len(d) for d in docs])


def test_more_items_than_documents_reuses_documents_at_new_offsets() -> None:
    tokens, ends = _corpus(n_docs=5, doc_len=200)
    cfg = EvalSetSpec(n_items=12, n_distractors=3, context_tokens=16, continuation_tokens=8)
    items = build_eval_items(tokens, ends, eos_id=0, cfg=cfg, seed=0)
    assert len(items) == 12
    for item in items:
        true = item["choices"][item["label"]]
        doc = item["context"][0] // 1000
        # the true continuation follows the context inside the same document
        assert true[0] == item["context"][-1] + 1 and true[0] // 1000 == doc
        others = [c for i, c in enumerate(item["choices"]) if i != item["label"]]
        assert len(others) == 3 and all(c[0] // 1000 != doc for c in others)
        assert all(len(c) == 8 for c in item["choices"])
    contexts = {tuple(item["context"]) for item in items}
    assert len(contexts) > 5  # a reused document gives a different window
    again = build_eval_items(tokens, ends, eos_id=0, cfg=cfg, seed=0)
    assert again == items
