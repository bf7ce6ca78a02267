"""MoE feed-forward against a per-token reference loop and the Switch balancing formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from training_core.model import FeedForward
from training_core.moe import MoEConfig, MoEFeedForward, moe_param_counts

torch.set_num_threads(1)
D, H = 8, 12


def _moe(n_experts: int, top_k: int, coef: float = 0.01) -> MoEFeedForward:
    torch.manual_seed(0)
    layer = MoEFeedForward(D, H, MoEConfig(n_experts=n_experts, top_k=top_k, aux_loss_coef=coef))
    layer.init_weights(0.3, 0.3)
    return layer


def test_forward_matches_per_token_reference() -> None:
    layer = _moe(n_experts=4, top_k=2)
    x = torch.randn(2, 5, D, dtype=torch.float32)
    out = layer(x)
    for b in range(2):
        for t in range(5):
            tok = x[b, t]
            probs = F.softmax(layer.router.weight @ tok, dim=-1)
            top_p, top_i = probs.topk(2)
            ref = torch.zeros(D)
            for p, e in zip(top_p / top_p.sum(), top_i.tolist(), strict=True):
                h = F.silu(tok @ layer.w_gate[e]) * (tok @ layer.w_up[e])
                ref += p * (h @ layer.w_down[e])
            torch.testing.assert_close(out[b, t], ref, atol=1e-5, rtol=1e-5)


def test_aux_loss_is_the_switch_formula() -> None:
    layer = _moe(n_experts=3, top_k=1, coef=0.5)
    x = torch.randn(16, D)
    layer(x)
    probs = F.softmax(x @ layer.router.weight.T, dim=-1)  # (16, 3)
    frac = torch.bincount(probs.argmax(dim=-1), minlength=3).float() / 16
    expected = 0.5 * 3 * (frac * probs.mean(dim=0)).sum()
    torch.testing.assert_close(layer.last_aux_loss, expected)


def test_identical_experts_with_all_routed_equal_a_dense_ffn() -> None:
    layer = _moe(n_experts=2, top_k=2)
    with torch.no_grad():
        layer.w_gate[1].copy_(layer.w_gate[0])
        layer.w_up[1].copy_(layer.w_up[0])
        layer.w_down[1].copy_(layer.w_down[0])
    dense = FeedForward(D, H)
    with torch.no_grad():  # nn.Linear stores (out, in); the experts store (in, out)
        dense.w_gate.weight.copy_(layer.w_gate[0].T)
        dense.w_up.weight.copy_(layer.w_up[0].T)
        dense.w_down.weight.copy_(layer.w_down[0].T)
    x = torch.randn(3, 4, D)
    torch.testing.assert_close(layer(x), dense(x), atol=1e-5, rtol=1e-5)


def test_param_counts_and_config_validation() -> None:
    layer = _moe(n_experts=4, top_k=1)
    total, active = moe_param_counts(D, H, layer.cfg)
    assert total == sum(p.numel() for p in layer.parameters())
    assert active == D * 4 + 3 * D * H
    with pytest.raises(ValidationError, match="top_k"):
        MoEConfig(n_experts=2, top_k=3)
