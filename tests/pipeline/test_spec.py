"""BudgetSpec validation names the field; the hash follows every byte-deciding setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline import BudgetSpec


def test_defaults_and_sorted_sizes():
    spec = BudgetSpec(sizes=(400_000, 100_000))
    assert spec.sizes == (100_000, 400_000)
    assert spec.source.kind == "stdlib" and spec.tokenizer.vocab_size == 2048
    assert len(spec.spec_hash) == 16


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"sizes": [1], "colour": "red"}, "colour"),
        ({"sizes": [1], "source": {"kind": "stdlib", "pth": "x"}}, "pth"),
        ({"sizes": [5, 5]}, "sizes"),
        ({"sizes": [0]}, "sizes"),
        ({"sizes": [1], "heldout_fraction": 0.7}, "heldout_fraction"),
        ({"sizes": [1], "dedup": {"num_perm": 64, "bands": 5}}, "dedup.bands"),
        ({"sizes": [1], "source": {"kind": "jsonl"}}, "source.path"),
        ({"sizes": [1], "tokenizer": {"vocab_size": 10}}, "vocab_size"),
    ],
)
def test_bad_fields_are_named(data, field):
    with pytest.raises(ValidationError, match=field.split(".")[-1]):
        BudgetSpec.model_validate(data)


def test_frozen():
    spec = BudgetSpec(sizes=(10,))
    with pytest.raises(ValidationError):
        spec.seed = 3


def test_hash_tracks_settings_and_tokenizer_bytes(tmp_path):
    base = BudgetSpec(sizes=(10,))
    assert base.spec_hash == BudgetSpec(sizes=(10,)).spec_hash
    assert base.spec_hash != BudgetSpec(sizes=(10,), seed=1).spec_hash
    assert base.spec_hash != BudgetSpec(sizes=(10, 20)).spec_hash
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    with_tok = BudgetSpec(sizes=(10,), tokenizer={"path": str(tok)})
    before = with_tok.spec_hash
    tok.write_text('{"edited": true}')
    assert with_tok.spec_hash != before  # a tokenizer edited in place is a new spec
