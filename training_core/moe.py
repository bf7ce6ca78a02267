"""Top-k routed mixture-of-experts feed-forward with a load-balancing loss.

A drop-in replacement for the dense SwiGLU feed-forward in ``model.py``: each token is sent to
``top_k`` of ``n_experts`` SwiGLU experts, their outputs mixed by the renormalised router
probabilities (Mixtral-style). The Switch-Transformer balancing loss
``coef * E * sum_e f_e * P_e`` (f_e: fraction of routed slots that went to expert e, P_e: mean
router probability of e) is kept on the module after each forward; ``Transformer.aux_loss()``
sums it over layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn


class MoEConfig(BaseModel):
    """Sparse FFN: ``n_experts`` SwiGLU experts of ``ffn_hidden`` each, ``top_k`` of them active."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_experts: int = Field(ge=2, le=1024, description="Experts per MoE layer.")
    top_k: int = Field(ge=1, le=64, description="Experts each token is routed to.")
    aux_loss_coef: float = Field(
        default=0.01, ge=0.0, le=10.0, description="Weight of the load-balancing loss."
    )

    @model_validator(mode="after")
    def _top_k_fits(self) -> MoEConfig:
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k ({self.top_k}) must be <= n_experts ({self.n_experts})")
        return self


class MoEFeedForward(nn.Module):
    """Router + stacked expert weights; experts run one after another on their routed tokens."""

    def __init__(self, d_model: int, ffn_hidden: int, cfg: MoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.router = nn.Linear(d_model, cfg.n_experts, bias=False)
        # Stacked expert weights (E, in, out) so one parameter holds every expert (FSDP-friendly).
        self.w_gate = nn.Parameter(torch.empty(cfg.n_experts, d_model, ffn_hidden))
        self.w_up = nn.Parameter(torch.empty(cfg.n_experts, d_model, ffn_hidden))
        self.w_down = nn.Parameter(torch.empty(cfg.n_experts, ffn_hidden, d_model))
        self.last_aux_loss: Tensor | None = None

    def init_weights(self, std: float, out_std: float) -> None:
        nn.init.trunc_normal_(self.router.weight, std=std, a=-3 * std, b=3 * std)
        for w, s in ((self.w_gate, std), (self.w_up, std), (self.w_down, out_std)):
            nn.init.trunc_normal_(w, std=s, a=-3 * s, b=3 * s)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, d), N = B*T
        n_tokens, n_experts, k = flat.shape[0], self.cfg.n_experts, self.cfg.top_k
        probs = F.softmax(self.router(flat).float(), dim=-1)  # (N, E), fp32 for a stable softmax
        top_p, top_idx = probs.topk(k, dim=-1)  # (N, k)
        top_p = top_p / top_p.sum(dim=-1, keepdim=True)

        # Balancing loss: f_e from hard assignments (no gradient), P_e carries the gradient.
        counts = torch.bincount(top_idx.reshape(-1), minlength=n_experts).to(probs.dtype)
        frac_routed = counts / (n_tokens * k)  # (E,)
        self.last_aux_loss = (
            self.cfg.aux_loss_coef * n_experts * (frac_routed * probs.mean(0)).sum()
        )

        out = torch.zeros_like(flat)
        slot_expert = top_idx.reshape(-1)  # (N*k,) expert of each routed slot
        slot_token = torch.arange(n_tokens, device=x.device).repeat_interleave(k)  # (N*k,)
        slot_weight = top_p.reshape(-1)
        for e in range(n_experts):
            sel = (slot_expert == e).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                continue
            tok = slot_token[sel]
            h = flat[tok]  # (n_e, d)
            h = F.silu(h @ self.w_gate[e]) * (h @ self.w_up[e])  # (n_e, hidden)
            h = (h @ self.w_down[e]) * slot_weight[sel, None].to(h.dtype)  # (n_e, d)
            out.index_add_(0, tok, h.to(out.dtype))
        return out.reshape(shape)


def moe_param_counts(d_model: int, ffn_hidden: int, cfg: MoEConfig) -> tuple[int, int]:
    """(total, active) parameters of one MoE layer: router + all experts, router + top_k experts."""
    per_expert = 3 * d_model * ffn_hidden
    router = d_model * cfg.n_experts
    return router + cfg.n_experts * per_expert, router + cfg.top_k * per_expert
