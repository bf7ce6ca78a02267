"""Parameter counts and training FLOPs per token, computed from the config's structure.

Conventions (logged with every run, so write them down):

- Parameters "without embeddings" exclude the input embedding and the LM head (Kaplan et al.);
  with tied embeddings the shared matrix is counted once in ``total``.
- Training FLOPs per token = 6 * N_matmul + attention, where N_matmul counts the weights a token
  multiplies through: every linear layer including the LM head (the embedding is a lookup, 0),
  MoE counted with the router plus ``top_k`` experts. 6 = 2 (multiply-add) * 3 (forward +
  backward for inputs and weights).
- Attention scores and weighted values per layer per token: QK^T and AV are 2 * T * d FLOPs each
  in the forward, so 4 * T * d forward, 12 * T * d training for bidirectional attention. Causal
  attention only needs the lower triangle: counted as HALF of that, 6 * T * d (what a
  causal-aware kernel such as flash-attn executes). So for the same model the DLM's budget per
  token is slightly larger; both are reported, and compute-matched comparisons use these numbers.
- Norms, RoPE, softmax, activations are ignored (< 1% at every preset).
"""

from __future__ import annotations

from training_core.model import ModelConfig


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """``total``, ``non_embedding``, ``active`` (MoE: top_k experts only; embeddings included)
    and ``active_non_embedding`` parameters of the model ``cfg`` describes."""
    d, h, V, L = cfg.d_model, cfg.ffn_hidden, cfg.vocab_size, cfg.depth
    attn = 4 * d * d  # fused qkv (3 d^2) + output (d^2)
    norms = 2 * d
    if cfg.moe is None:
        ffn_total = ffn_active = 3 * d * h
    else:
        router = d * cfg.moe.n_experts
        ffn_total = router + cfg.moe.n_experts * 3 * d * h
        ffn_active = router + cfg.moe.top_k * 3 * d * h
    non_embedding = L * (attn + norms + ffn_total) + d  # + final norm
    active_non_embedding = L * (attn + norms + ffn_active) + d
    embeddings = V * d * (1 if cfg.tie_embeddings else 2)
    return {
        "total": non_embedding + embeddings,
        "non_embedding": non_embedding,
        "active": active_non_embedding + embeddings,
        "active_non_embedding": active_non_embedding,
    }


def matmul_params(cfg: ModelConfig) -> int:
    """Weights one token multiplies through (active experts only), LM head included."""
    d, h, L = cfg.d_model, cfg.ffn_hidden, cfg.depth
    if cfg.moe is None:
        ffn = 3 * d * h
    else:
        ffn = d * cfg.moe.n_experts + cfg.moe.top_k * 3 * d * h
    return L * (4 * d * d + ffn) + d * cfg.vocab_size


def attention_flops_per_token(cfg: ModelConfig, causal: bool, seq_len: int | None = None) -> float:
    """Training FLOPs of QK^T and AV per token: 12 * L * T * d, halved when causal."""
    T = seq_len if seq_len is not None else cfg.seq_len
    full = 12.0 * cfg.depth * T * cfg.d_model
    return full / 2 if causal else full


def flops_per_token(cfg: ModelConfig, causal: bool, seq_len: int | None = None) -> float:
    """Training (forward + backward) FLOPs per token; see the module docstring for conventions."""
    return 6.0 * matmul_params(cfg) + attention_flops_per_token(cfg, causal, seq_len)
