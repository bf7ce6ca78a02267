"""A Llama-style transformer shared by the AR and the DLM runs (RMSNorm, RoPE, SwiGLU, no biases).

The two objectives use the very same module; the only switch is ``forward(idx, causal)``.
Single-device code: parallelism (FSDP2, activation checkpointing, compile) is applied from
outside in ``parallel.py``; this file imports nothing from ``torch.distributed``.

Build on the meta device, then materialise and initialise::

    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device="cuda")
    model.init_weights()

Built on a real device, the constructor initialises the weights itself (from the default
torch generator, so ``torch.manual_seed`` makes it reproducible).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from training_core.attention import attention
from training_core.moe import MoEConfig, MoEFeedForward


class ModelConfig(BaseModel):
    """Shape of one transformer; ``vocab_size`` counts embedding rows, mask token included."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Preset name or a user label.")
    vocab_size: int = Field(ge=2, le=10_000_000, description="Embedding rows incl. the mask token.")
    seq_len: int = Field(ge=1, le=1_048_576, description="Training context length (RoPE cache).")
    depth: int = Field(ge=1, le=512, description="Number of transformer blocks.")
    d_model: int = Field(ge=1, le=65_536, description="Residual stream width.")
    n_heads: int = Field(
        ge=1, le=1024, description="Attention heads; head_dim = d_model / n_heads."
    )
    ffn_hidden: int = Field(ge=1, le=262_144, description="SwiGLU hidden width (per expert).")
    rope_theta: float = Field(default=10_000.0, gt=0, description="RoPE base frequency.")
    norm_eps: float = Field(default=1e-5, gt=0, lt=1, description="RMSNorm epsilon.")
    tie_embeddings: bool = Field(default=False, description="Share input embedding and LM head.")
    moe: MoEConfig | None = Field(default=None, description="Sparse FFN; None for a dense model.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"n_heads: head_dim = d_model / n_heads = {self.head_dim} must be even for RoPE"
            )
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# --- presets: one knob (depth); width = depth * aspect, rounded up to whole heads -------------
# name: (depth, aspect, head_dim). CPU presets use narrow heads so they stay tiny; GPU presets use
# head_dim 128 (fast flash-attn tiles). Non-embedding parameters (see list_presets()):
# tiny 0.11M, xs 0.33M, s 0.80M, m 2.7M, 25m 25.7M, 125m 127M, 150m 137M, 350m 377M,
# 1b 1.05B, 1.7b 1.62B
# (names count non-embedding parameters, as in Kaplan et al.).
_PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 32, 32),
    "xs": (3, 32, 32),
    "s": (4, 32, 32),
    "m": (6, 32, 32),
    "25m": (8, 64, 128),  # width 512, 4 heads: the GPU mini-study's model (bench/gpu_check.py)
    "125m": (13, 64, 128),
    "150m": (14, 64, 128),
    "350m": (19, 64, 128),
    "1b": (27, 64, 128),
    "1.7b": (32, 64, 128),
}


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def model_preset(
    name: str, vocab_size: int, seq_len: int, moe: MoEConfig | None = None
) -> ModelConfig:
    """The preset ``name`` for a vocabulary (incl. mask token) and context length."""
    if name not in _PRESETS:
        raise ValueError(f"name: unknown preset {name!r}; choose from {sorted(_PRESETS)}")
    depth, aspect, head_dim = _PRESETS[name]
    d_model = _round_up(depth * aspect, head_dim)
    # SwiGLU: 8/3 * d keeps the FFN at ~8 d^2 params like a 4d GELU MLP; round for kernel tiles.
    ffn_hidden = _round_up(8 * d_model / 3, head_dim)
    return ModelConfig(
        name=name,
        vocab_size=vocab_size,
        seq_len=seq_len,
        depth=depth,
        d_model=d_model,
        n_heads=d_model // head_dim,
        ffn_hidden=ffn_hidden,
        moe=moe,
    )


def list_presets() -> list[str]:
    """Preset names, smallest first."""
    return list(_PRESETS)


# --- layers ------------------------------------------------------------------------------------
def rope_tables(seq_len: int, head_dim: int, theta: float, device: torch.device | None = None):
    """cos, sin tables ``(seq_len, head_dim / 2)`` in fp32."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device).float(), inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (B, T, H, D) by position; halves-split convention (not interleaved)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]  # (1, T, 1, D/2)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.wqkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)  # fused q, k, v
        self.wo = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, causal: bool) -> Tensor:
        B, T, C = x.shape
        qkv = self.wqkv(x).view(B, T, 3, self.n_heads, self.head_dim)  # (B, T, 3, H, D)
        q, k, v = qkv.unbind(dim=2)  # each (B, T, H, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = attention(q, k, v, causal=causal)  # (B, T, H, D)
        return self.wo(y.reshape(B, T, C))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.w_gate = nn.Linear(d_model, hidden, bias=False)
        self.w_up = nn.Linear(d_model, hidden, bias=False)
        self.w_down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn: nn.Module = (
            MoEFeedForward(cfg.d_model, cfg.ffn_hidden, cfg.moe)
            if cfg.moe is not None
            else FeedForward(cfg.d_model, cfg.ffn_hidden)
        )

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, causal: bool) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, causal)
        return x + self.ffn(self.ffn_norm(x))


# --- model -------------------------------------------------------------------------------------
class Transformer(nn.Module):
    """Token ids ``(B, T)`` -> logits ``(B, T, vocab_size)`` in fp32; ``causal`` picks AR vs DLM."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        # RoPE tables are derived state: not in the state dict, rebuilt by init_weights().
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if not self.tok_emb.weight.is_meta:
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re)initialise every weight from the default torch generator; also rebuilds RoPE tables.

        std 0.02 everywhere; the two residual-branch outputs (attention ``wo``, FFN down) use
        0.02 / sqrt(2 * depth) so the residual stream's variance does not grow with depth (GPT-2).
        """
        cfg, std = self.cfg, 0.02
        out_std = std / math.sqrt(2 * cfg.depth)
        device = self.tok_emb.weight.device
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_theta, device=device)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)
        nn.init.normal_(self.tok_emb.weight, std=std)
        if not cfg.tie_embeddings:
            nn.init.trunc_normal_(self.lm_head.weight, std=std, a=-3 * std, b=3 * std)
        for block in self.layers:
            for norm in (block.attn_norm, block.ffn_norm):
                nn.init.ones_(norm.weight)
            nn.init.trunc_normal_(block.attn.wqkv.weight, std=std, a=-3 * std, b=3 * std)
            nn.init.trunc_normal_(block.attn.wo.weight, std=out_std, a=-3 * out_std, b=3 * out_std)
            if isinstance(block.ffn, MoEFeedForward):
                block.ffn.init_weights(std, out_std)
            else:
                for lin, s in (
                    (block.ffn.w_gate, std),
                    (block.ffn.w_up, std),
                    (block.ffn.w_down, out_std),
                ):
                    nn.init.trunc_normal_(lin.weight, std=s, a=-3 * s, b=3 * s)
        nn.init.ones_(self.norm.weight)

    def forward(self, idx: Tensor, causal: bool, head: bool = True) -> Tensor:
        """Logits ``(B, T, V)`` fp32; ``head=False`` stops before the LM head and returns the
        final-normed hidden states ``(B, T, d)`` (for a fused head + loss, ``fused_ce.py``)."""
        T = idx.shape[1]
        if T <= self.rope_cos.shape[0]:
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        else:  # longer than seq_len (e.g. AR windows of seq_len + 1): build the tables on the fly
            cos, sin = rope_tables(T, self.cfg.head_dim, self.cfg.rope_theta, device=idx.device)
        x = self.tok_emb(idx)  # (B, T, d)
        for block in self.layers:
            x = block(x, cos, sin, causal)
        x = self.norm(x)
        if not head:
            return x  # (B, T, d)
        return self.lm_head(x).float()  # (B, T, V)

    def aux_loss(self) -> Tensor:
        """Sum of the MoE balancing losses of the last forward (already scaled by their coef)."""
        losses = [
            b.ffn.last_aux_loss
            for b in self.layers
            if isinstance(b.ffn, MoEFeedForward) and b.ffn.last_aux_loss is not None
        ]
        if not losses:
            return torch.zeros((), device=self.tok_emb.weight.device)
        return torch.stack(losses).sum()

    def num_params(self, include_embedding: bool = True) -> int:
        """Parameter count; without embeddings excludes the input embedding and the LM head."""
        total = sum(p.numel() for p in self.parameters())  # tied weights are yielded once
        if include_embedding:
            return total
        embed = self.tok_emb.weight.numel()
        head = 0 if self.cfg.tie_embeddings else self.lm_head.weight.numel()
        return total - embed - head

    def num_active_params(self, include_embedding: bool = True) -> int:
        """Parameters a token touches: for MoE only ``top_k`` of ``n_experts`` experts count."""
        total = self.num_params(include_embedding)
        moe = self.cfg.moe
        if moe is None:
            return total
        per_expert = 3 * self.cfg.d_model * self.cfg.ffn_hidden
        return total - self.cfg.depth * (moe.n_experts - moe.top_k) * per_expert
