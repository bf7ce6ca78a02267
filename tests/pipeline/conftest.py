"""Fixtures for the budget builder tests: one real build shared by the read-only assertions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_corpora import make_texts, tree_spec, write_tree

from pipeline import build_budgets


@pytest.fixture(scope="module")
def tree_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "corpus"
    write_tree(root, make_texts(80))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, tree_corpus):
    """One real build shared by the read-only assertions: (spec, root, manifests)."""
    out = tmp_path_factory.mktemp("budgets")
    spec = tree_spec(tree_corpus)
    return spec, out, build_budgets(spec, root=out)
