"""Objectives against hand-rolled reference computations (loops over batch and positions)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor, nn

from training_core.model import Transformer, model_preset
from training_core.moe import MoEConfig
from training_core.objectives import (
    ObjectiveConfig,
    ar_nll,
    build_objective,
    dlm_elbo,
    sample_times,
)

torch.set_num_threads(1)
DATA_VOCAB = 40
MASK_ID = DATA_VOCAB  # the extra embedding row
SEQ = 12


class UniformModel(nn.Module):
    """Predicts the uniform distribution: every CE is exactly ln(V)."""

    def forward(self, idx: Tensor, causal: bool) -> Tensor:
        return torch.zeros(*idx.shape, DATA_VOCAB + 1)


def _model(seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(model_preset("tiny", DATA_VOCAB + 1, SEQ).model_copy(update=kw))


def _tokens(b: int = 4, t: int = SEQ, seed: int = 1) -> Tensor:
    return torch.randint(0, DATA_VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))


def _log_prob(logits: Tensor, b: int, t: int, target: int) -> float:
    return float(torch.log_softmax(logits[b, t].double(), dim=-1)[target])


def test_ar_loss_matches_reference_loop_and_is_ln_vocab_at_init() -> None:
    model, tokens = _model(), _tokens()
    obj = build_objective(ObjectiveConfig(kind="ar"), MASK_ID)
    assert obj.causal
    loss, stats = obj.loss(model, tokens, torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(tokens[:, :-1], causal=True)
    B, T = tokens.shape
    ref = [-_log_prob(logits, b, t, int(tokens[b, t + 1])) for b in range(B) for t in range(T - 1)]
    assert loss.item() == pytest.approx(sum(ref) / len(ref), rel=1e-5)
    assert stats["main_loss"] == pytest.approx(loss.item())
    assert loss.item() == pytest.approx(math.log(DATA_VOCAB + 1), abs=0.1)


def _reference_smdm(model: nn.Module, tokens: Tensor, seed: int, eps: float) -> float:
    """Replays the generator draws by hand: stratified t, masks, CE/p_mask, / (B*T)."""
    gen = torch.Generator().manual_seed(seed)
    B, T = tokens.shape
    u0 = float(torch.rand((1,), generator=gen))
    u = torch.rand((B, T), generator=gen)
    total = 0.0
    for b in range(B):
        t = (u0 + b / B) % 1.0
        p = (1 - eps) * t + eps
        noisy = tokens[b].clone()
        masked = [i for i in range(T) if float(u[b, i]) < p]
        noisy[masked] = MASK_ID
        with torch.no_grad():
            logits = model(noisy[None], causal=False)
        total += sum(-_log_prob(logits, 0, i, int(tokens[b, i])) / p for i in masked)
    return total / (B * T)


def test_dlm_smdm_loss_matches_reference() -> None:
    model, tokens = _model(), _tokens()
    obj = build_objective(ObjectiveConfig(kind="dlm", eps=1e-3), MASK_ID)
    assert not obj.causal
    loss, stats = obj.loss(model, tokens, torch.Generator().manual_seed(3))
    assert loss.item() == pytest.approx(_reference_smdm(model, tokens, 3, 1e-3), rel=1e-5)
    assert 0 < stats["mask_frac"] < 1


def test_dlm_seed_variant_masks_at_least_one_and_weights_by_realised_fraction() -> None:
    model, tokens = _model(), _tokens(b=32, t=4)
    obj = build_objective(ObjectiveConfig(kind="dlm", dlm_variant="seed"), MASK_ID)
    gen_seed = 5
    noisy, mask, weight = obj.corrupt(tokens, torch.Generator().manual_seed(gen_seed))
    assert mask.any(dim=1).all()  # with T=4 and t stratified near 0, some rows had none drawn
    assert (noisy[mask] == MASK_ID).all() and (noisy[~mask] == tokens[~mask]).all()
    loss, _ = obj.loss(model, tokens, torch.Generator().manual_seed(gen_seed))
    with torch.no_grad():
        logits = model(noisy, causal=False)
    per_row = []
    for b in range(tokens.shape[0]):
        masked = [i for i in range(4) if mask[b, i]]
        per_row.append(
            sum(-_log_prob(logits, b, i, int(tokens[b, i])) for i in masked) / len(masked)
        )
    assert loss.item() == pytest.approx(sum(per_row) / len(per_row), rel=1e-5)


def test_stratified_times_cover_every_stratum() -> None:
    t = sample_times(16, True, torch.Generator().manual_seed(0), torch.device("cpu"))
    strata = torch.floor(torch.sort(t).values * 16).long()
    assert strata.tolist() == list(range(16))


@pytest.mark.parametrize("kind", ["mask", "replace"])
def test_ar_input_noise_only_touches_inputs(kind: str) -> None:
    cfg = ObjectiveConfig(kind="ar", ar_input_noise=0.3, ar_noise_kind=kind)
    obj = build_objective(cfg, MASK_ID)
    tokens = _tokens(b=64, t=32)
    noised = obj.noise_inputs(tokens, torch.Generator().manual_seed(0))
    changed = noised != tokens
    frac = float(changed.float().mean())
    assert 0.2 < frac < 0.35  # "replace" can redraw the same token (1/40 of hits)
    if kind == "mask":
        assert (noised[changed] == MASK_ID).all()
    else:
        assert (noised < MASK_ID).all()
    clean = build_objective(ObjectiveConfig(kind="ar"), MASK_ID)
    assert torch.equal(clean.noise_inputs(tokens, torch.Generator()), tokens)


def test_moe_aux_loss_is_added_by_the_objective() -> None:
    model = _model(moe=MoEConfig(n_experts=4, top_k=2, aux_loss_coef=0.1))
    obj = build_objective(ObjectiveConfig(kind="dlm"), MASK_ID)
    loss, stats = obj.loss(model, _tokens(), torch.Generator().manual_seed(0))
    assert stats["aux_loss"] > 0
    assert loss.item() == pytest.approx(stats["main_loss"] + stats["aux_loss"], rel=1e-6)


def test_estimators_on_a_uniform_model_give_ln_vocab() -> None:
    tokens = _tokens(b=8, t=64)
    nll, se = ar_nll(UniformModel(), tokens)
    assert nll == pytest.approx(math.log(DATA_VOCAB + 1), rel=1e-6) and se == pytest.approx(0.0)
    # E[n_masked / (T p_mask)] = 1, so the ELBO of a uniform predictor is ln(V) up to MC noise.
    elbo, se = dlm_elbo(
        UniformModel(), tokens, MASK_ID, n_samples=32, gen=torch.Generator().manual_seed(0)
    )
    assert se > 0
    assert abs(elbo - math.log(DATA_VOCAB + 1)) < 4 * se + 0.02


def test_dlm_elbo_is_deterministic_and_bounds_a_trained_free_model() -> None:
    model, tokens = _model(), _tokens(b=4)
    a = dlm_elbo(model, tokens, MASK_ID, 4, torch.Generator().manual_seed(11), batch_size=3)
    b = dlm_elbo(model, tokens, MASK_ID, 4, torch.Generator().manual_seed(11), batch_size=3)
    assert a == b
    assert math.isfinite(a[0]) and a[1] > 0


def test_objective_config_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="ar_input_noise"):
        ObjectiveConfig(kind="dlm", ar_input_noise=0.1)
    with pytest.raises(ValidationError, match="dlm_variant"):
        ObjectiveConfig(kind="dlm", dlm_variant="other")
    with pytest.raises(ValidationError, match="extra"):
        ObjectiveConfig(kind="ar", extra=1)
    assert ObjectiveConfig(kind="dlm").model_dump()["dlm_variant"] == "smdm"


def test_dlm_loss_gradient_flows() -> None:
    model = _model()
    obj = build_objective(ObjectiveConfig(kind="dlm", antithetic=False), MASK_ID)
    loss, _ = obj.loss(model, _tokens(), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert F.mse_loss(model.tok_emb.weight.grad, torch.zeros_like(model.tok_emb.weight)) > 0


@pytest.mark.parametrize(
    "cfg",
    [
        ObjectiveConfig(kind="ar"),
        ObjectiveConfig(kind="ar", ar_input_noise=0.2, ar_noise_kind="replace"),
        ObjectiveConfig(kind="dlm"),
        ObjectiveConfig(kind="dlm", dlm_variant="seed", antithetic=False),
    ],
    ids=["ar", "ar-noise", "dlm-smdm", "dlm-seed"],
)
def test_a_few_steps_lower_the_loss(cfg: ObjectiveConfig) -> None:
    """Memorising one repetitive batch: the held-fixed-noise loss must fall for every objective."""
    model, obj = _model(), build_objective(cfg, MASK_ID)
    tokens = torch.arange(SEQ).repeat(8, 1) % 5  # (8, SEQ), period-5 pattern
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def fixed_noise_loss() -> float:
        with torch.no_grad():
            return obj.loss(model, tokens, torch.Generator().manual_seed(123))[0].item()

    before = fixed_noise_loss()
    gen = torch.Generator().manual_seed(0)
    for _ in range(25):
        loss, _ = obj.loss(model, tokens, gen)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert fixed_noise_loss() < 0.7 * before


@pytest.mark.parametrize(
    "cfg",
    [
        ObjectiveConfig(kind="ar"),
        ObjectiveConfig(kind="ar", ar_input_noise=0.3, ar_noise_kind="replace"),
        ObjectiveConfig(kind="dlm", dlm_variant="smdm"),
        ObjectiveConfig(kind="dlm", dlm_variant="seed", antithetic=False),
    ],
    ids=["ar", "ar-noise", "dlm-smdm", "dlm-seed"],
)
def test_loss_over_row_slices_recombines_to_the_whole_batch(cfg: ObjectiveConfig) -> None:
    """What data-parallel ranks rely on: with the same generator seed, the row-weighted losses of
    a split batch add up to the whole batch's loss (every slice sees the whole batch's noise)."""
    model, tokens = _model(), _tokens(b=7)
    obj = build_objective(cfg, MASK_ID)
    whole, _ = obj.loss(model, tokens, torch.Generator().manual_seed(5))
    parts = []
    for rows in (slice(0, 3), slice(3, 5), slice(5, 7)):
        part, _ = obj.loss(model, tokens, torch.Generator().manual_seed(5), rows)
        parts.append(part * (rows.stop - rows.start) / 7)
    torch.testing.assert_close(sum(parts), whole, rtol=1e-5, atol=1e-6)
    # Another seed draws other noise, so the equality above is not a tautology.
    if cfg.kind == "dlm" or cfg.ar_input_noise > 0:
        other, _ = obj.loss(model, tokens, torch.Generator().manual_seed(6))
        assert abs(other.item() - whole.item()) > 1e-4
