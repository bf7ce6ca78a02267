"""Content hashes: sha256 of canonical JSON, the one rule behind every id in a study.

Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"))``: the same payload gives the
same bytes on every machine. A config hash leaves out every field still at its default
(``exclude_defaults``), so adding a field later, with a default that keeps the old behaviour,
leaves every earlier id as it was. The price: a default must never change meaning (a changed
default would give runs trained under the old one the new one's id); the defaults that hashes
leave out are pinned by a test (``tests/formats/test_hashing.py``).
"""

from __future__ import annotations

import hashlib
import json
import typing
from typing import Any

from pydantic import BaseModel

ID_HEX = 16  # run ids, spec hashes, budget-spec hashes: 64 bits, no collision in any study


def canonical_json(payload: Any) -> str:
    """The one serialisation that is hashed: sorted keys, no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def sha256_hex(payload: Any) -> str:
    """Full sha256 hex digest of ``payload``'s canonical JSON."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def config_hash(config: BaseModel, exclude: Any = None) -> str:
    """First ``ID_HEX`` hex of the sha256 of ``config`` without its default-valued fields (at any
    depth) and without ``exclude`` (pydantic's exclude: a set of names or a nested mapping)."""
    payload = config.model_dump(mode="json", exclude_defaults=True, exclude=exclude)
    return sha256_hex(payload)[:ID_HEX]


def hashed_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Every default that ``config_hash`` leaves out, by field path (nested models walked even
    when the field itself is required): what a test pins so that no default changes meaning."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if not field.is_required():
            default = field.get_default(call_default_factory=True)
            if not isinstance(default, BaseModel):  # a default model: its fields, below
                out[name] = json.loads(json.dumps(default, default=str))
        for sub in _models_in(field.annotation):  # also inside Optional[Model]
            for path, value in hashed_defaults(sub).items():
                out[f"{name}.{path}"] = value
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
