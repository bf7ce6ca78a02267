"""The two training objectives behind one protocol, and their validation estimators.

AR: next-token cross-entropy under a causal mask (optionally with noised inputs: the paper's
control). DLM (masked diffusion): bidirectional attention, no label shift; per sequence a time
t ~ U(0, 1), each token replaced by the mask id with probability t (linear schedule
alpha_t = 1 - t), cross-entropy on masked positions weighted by 1/t, normalised by all B*T
positions. Two published variants:

- ``seed``  (the seed paper's code): no eps floor; at least one token masked per sequence;
  weight by the realised masked fraction (n_masked / T) instead of t.
- ``smdm``  (SMDM / LLaDA / MDLM): p_mask = (1 - eps) t + eps, weight 1 / p_mask.

The MoE load-balancing loss is added HERE (``loss = objective + model.aux_loss()``), so the
trainer treats both objectives and dense/sparse models alike; stats report both parts.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from training_core.fused_ce import LOSS_IMPLS, linear_cross_entropy


class ObjectiveConfig(BaseModel):
    """Which objective a run trains, with every AR/DLM difference a named switch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["ar", "dlm"]
    dlm_variant: Literal["seed", "smdm"] = Field(
        default="smdm", description="DLM masking/weighting rule (see module docstring)."
    )
    eps: float = Field(default=1e-3, ge=0.0, lt=1.0, description="smdm: p_mask floor.")
    antithetic: bool = Field(
        default=True, description="DLM: stratified t across the batch (lower-variance loss)."
    )
    ar_input_noise: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="AR control: fraction of input tokens noised."
    )
    ar_noise_kind: Literal["mask", "replace"] = Field(
        default="mask", description="AR noise: the mask id, or a uniformly random real token."
    )

    @model_validator(mode="after")
    def _noise_only_for_ar(self) -> ObjectiveConfig:
        if self.kind == "dlm" and self.ar_input_noise > 0:
            raise ValueError("ar_input_noise applies to kind='ar' only")
        return self


class Objective(Protocol):
    """What the trainer needs: the attention mask and a scalar loss with float stats.

    ``loss`` draws its noise for every row of ``tokens`` (B, T) and returns the mean loss over
    ``tokens[rows]`` (all rows when ``rows`` is None). A data-parallel rank passes the whole
    micro-batch and its own slice, so the noise a row gets never depends on how the batch is
    split over ranks: a sharded run draws exactly what one process draws.
    """

    causal: bool

    def loss(
        self, model: nn.Module, tokens: Tensor, gen: torch.Generator, rows: slice | None = None
    ) -> tuple[Tensor, dict[str, float]]: ...


def _rand(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    """Uniform [0, 1) drawn on the generator's device, then moved (a CPU gen works with CUDA)."""
    return torch.rand(shape, generator=gen, device=gen.device).to(device)


def sample_times(n: int, antithetic: bool, gen: torch.Generator, device: torch.device) -> Tensor:
    """``n`` times in [0, 1); stratified = one offset u, t_i = (u + i / n) mod 1 (MDLM)."""
    if antithetic:
        u = _rand((1,), gen, device)
        return (u + torch.arange(n, device=device) / n) % 1.0
    return _rand((n,), gen, device)


def head_loss(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    weights: Tensor,
    causal: bool,
    loss_impl: str,
) -> Tensor:
    """sum over positions of ``weights * CE(model(inputs), targets)``; all ``(B, T)``.

    ``plain`` materialises the logits; ``chunked``/``liger`` stop the model before its LM head and
    fuse head + CE (``fused_ce.py``), so (B*T, V) logits never exist. Same numbers either way.
    """
    hidden = model(inputs, causal=causal, head=False)  # (B, T, d)
    weight = model.lm_head.weight  # (V, d); a compiled model forwards the attribute
    return linear_cross_entropy(
        hidden.flatten(0, 1), weight, targets.flatten(), weights.flatten(), loss_impl
    )


def _finish(
    model: nn.Module, main: Tensor, extra: dict[str, Tensor]
) -> tuple[Tensor, dict[str, float]]:
    """Add the MoE balancing loss; turn every stat into a float with ONE device sync."""
    aux_fn = getattr(model, "aux_loss", None)
    aux = aux_fn() if aux_fn is not None else torch.zeros((), device=main.device)
    named = {"main_loss": main, "aux_loss": aux, **extra}
    values = torch.stack([v.detach().float().reshape(()) for v in named.values()]).tolist()
    return main + aux, dict(zip(named, values, strict=True))


class AutoregressiveObjective:
    """Next-token CE: ``tokens[:, :-1]`` (possibly noised) predict ``tokens[:, 1:]``."""

    causal = True

    def __init__(self, cfg: ObjectiveConfig, mask_id: int, loss_impl: str = "plain") -> None:
        self.cfg, self.mask_id, self.loss_impl = cfg, mask_id, loss_impl

    def noise_inputs(self, inputs: Tensor, gen: torch.Generator) -> Tensor:
        """Replace a fraction ``ar_input_noise`` of inputs by the mask id or a random real token."""
        p = self.cfg.ar_input_noise
        if p == 0:
            return inputs
        hit = _rand(tuple(inputs.shape), gen, inputs.device) < p
        if self.cfg.ar_noise_kind == "mask":
            noise = torch.full_like(inputs, self.mask_id)
        else:  # uniform over real tokens [0, mask_id), never the mask id itself
            noise = (_rand(tuple(inputs.shape), gen, inputs.device) * self.mask_id).long()
        return torch.where(hit, noise, inputs)

    def loss(
        self, model: nn.Module, tokens: Tensor, gen: torch.Generator, rows: slice | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        rows = slice(None) if rows is None else rows
        inputs = self.noise_inputs(tokens[:, :-1], gen)[rows]  # (b, T-1): noise for all B rows
        targets = tokens[rows, 1:]  # (b, T-1)
        if self.loss_impl == "plain":
            logits = model(inputs, causal=True)  # (b, T-1, V)
            main = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        else:  # the mean as a weighted sum: weights 1 / (b * (T-1))
            weights = torch.full(targets.shape, 1.0 / targets.numel(), device=targets.device)
            main = head_loss(model, inputs, targets, weights, True, self.loss_impl)
        return _finish(model, main, {})


class MaskedDiffusionObjective:
    """Masked-diffusion ELBO: CE on masked positions weighted by 1/t, over all B*T positions."""

    causal = False

    def __init__(self, cfg: ObjectiveConfig, mask_id: int, loss_impl: str = "plain") -> None:
        self.cfg, self.mask_id, self.loss_impl = cfg, mask_id, loss_impl

    def corrupt(self, tokens: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """-> (noisy tokens (B, T), mask (B, T) bool, per-sequence loss weight (B,))."""
        B, T = tokens.shape
        t = sample_times(B, self.cfg.antithetic, gen, tokens.device)  # (B,)
        u = _rand((B, T), gen, tokens.device)
        if self.cfg.dlm_variant == "smdm":
            p_mask = (1 - self.cfg.eps) * t + self.cfg.eps
            mask = u < p_mask[:, None]
            weight = 1.0 / p_mask
        else:  # seed: no floor; force one masked token where none was; weight T / n_masked
            mask = u < t[:, None]
            forced = torch.zeros_like(mask)
            forced[torch.arange(B, device=tokens.device), u.argmin(dim=1)] = True
            mask = torch.where(mask.any(dim=1, keepdim=True), mask, forced)
            weight = T / mask.sum(dim=1).float()
        noisy = torch.where(mask, torch.full_like(tokens, self.mask_id), tokens)
        return noisy, mask, weight

    def loss(
        self, model: nn.Module, tokens: Tensor, gen: torch.Generator, rows: slice | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        noisy, mask, weight = self.corrupt(tokens, gen)  # t strata and masks over all B rows
        if rows is not None:
            tokens, noisy, mask, weight = tokens[rows], noisy[rows], mask[rows], weight[rows]
        B, T = tokens.shape  # the rows this call scores
        if self.loss_impl == "plain":
            logits = model(noisy, causal=False)  # (B, T, V): no label shift
            # CE at every position, kept where masked: static shapes, no device sync (vs
            # logits[mask]).
            ce = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none")
            main = (ce.view(B, T) * mask * weight[:, None]).sum() / (B * T)
        else:
            weights = mask * weight[:, None] / (B * T)  # (B, T): 0 where not masked
            main = head_loss(model, noisy, tokens, weights, False, self.loss_impl)
        return _finish(model, main, {"mask_frac": mask.float().mean()})


def build_objective(cfg: ObjectiveConfig, mask_id: int, loss_impl: str = "plain") -> Objective:
    """The objective for ``cfg``; ``mask_id`` is the extra embedding row (= data vocab size);
    ``loss_impl`` picks how the LM head + CE is computed (``fused_ce.py``; equal numbers)."""
    if loss_impl not in LOSS_IMPLS:
        raise ValueError(f"loss_impl: must be one of {list(LOSS_IMPLS)}, got {loss_impl!r}")
    if cfg.kind == "ar":
        return AutoregressiveObjective(cfg, mask_id, loss_impl)
    return MaskedDiffusionObjective(cfg, mask_id, loss_impl)


# --- validation estimators ---------------------------------------------------------------------
def _mean_se(per_seq: Tensor) -> tuple[float, float]:
    n = per_seq.numel()
    se = float(per_seq.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return float(per_seq.mean()), se


@torch.no_grad()
def ar_nll(model: nn.Module, tokens: Tensor, batch_size: int = 32) -> tuple[float, float]:
    """Mean next-token NLL per predicted token over windows ``(N, T)``; SE across windows."""
    per_seq = []
    for chunk in tokens.split(batch_size):
        logits = model(chunk[:, :-1], causal=True)  # (b, T-1, V)
        ce = F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="none")  # (b, T-1)
        per_seq.append(ce.mean(dim=1).cpu())
    return _mean_se(torch.cat(per_seq))


@torch.no_grad()
def dlm_elbo(
    model: nn.Module,
    tokens: Tensor,
    mask_id: int,
    n_samples: int = 32,
    gen: torch.Generator | None = None,
    eps: float = 1e-3,
    batch_size: int = 32,
) -> tuple[float, float]:
    """Monte Carlo negative ELBO per token (an upper bound on the NLL) over windows ``(N, T)``.

    Per window, ``n_samples`` stratified times t_j = (j + u_j) / n_samples; each sample's
    estimate is sum over masked CE / (T * p_mask), p_mask = (1 - eps) t + eps. Returns the mean
    over windows and the SE across windows of their per-window means (data + MC noise). Pass a
    freshly seeded ``gen`` (default seed 0) so every evaluation sees the same noise.
    """
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    N, T = tokens.shape
    # Stratified times: row j of (n_samples, N) lies in [j / n, (j + 1) / n).
    strata = torch.arange(n_samples, dtype=torch.float32)[:, None]
    times = (
        strata + torch.rand((n_samples, N), generator=gen, device=gen.device).cpu()
    ) / n_samples
    totals = torch.zeros(N)
    for j in range(n_samples):
        for start in range(0, N, batch_size):
            chunk = tokens[start : start + batch_size]  # (b, T)
            p_mask = ((1 - eps) * times[j, start : start + batch_size] + eps).to(chunk.device)
            mask = _rand(tuple(chunk.shape), gen, chunk.device) < p_mask[:, None]
            noisy = torch.where(mask, torch.full_like(chunk, mask_id), chunk)
            logits = model(noisy, causal=False)  # (b, T, V)
            ce = F.cross_entropy(logits.transpose(1, 2), chunk, reduction="none")  # (b, T)
            est = (ce * mask).sum(dim=1) / (T * p_mask)  # (b,)
            totals[start : start + chunk.shape[0]] += est.cpu()
    return _mean_se(totals / n_samples)
