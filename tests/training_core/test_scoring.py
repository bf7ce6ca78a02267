"""Multiple-choice scoring against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training_core.model import Transformer, model_preset
from training_core.scoring import mc_accuracy, score_choices_ar, score_choices_dlm

torch.set_num_threads(1)
V = 30
MASK_ID = V - 1


class FavouriteTokenModel(nn.Module):
    """Puts most probability on token 7 everywhere, in both attention modes."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(V))
        with torch.no_grad():
            self.bias[7] = 5.0

    def forward(self, idx: Tensor, causal: bool) -> Tensor:
        return self.bias.expand(*idx.shape, V)


def _model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(model_preset("tiny", V, 16))


def test_ar_scores_match_one_sequence_at_a_time() -> None:
    model = _model()
    context, choices = [3, 4, 5], [[6], [7, 8, 9], [1, 2]]
    scores = score_choices_ar(model, context, choices)
    for choice, score in zip(choices, scores, strict=True):
        seq = context + choice
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([seq[:-1]]), causal=True)[0].double(), dim=-1)
        ref = sum(float(logp[i - 1, seq[i]]) for i in range(len(context), len(seq)))
        assert score == pytest.approx(ref, abs=1e-5)


def test_ar_context_is_cut_from_the_left_to_fit() -> None:
    model = _model()  # seq_len 16
    long_context = list(range(20)) * 2
    scores = score_choices_ar(model, long_context, [[1, 2], [3]])
    kept = score_choices_ar(model, long_context[-15:], [[1, 2]])[0]
    assert all(math.isfinite(s) for s in scores)
    assert scores[0] == pytest.approx(kept, abs=1e-5)


def test_dlm_single_token_answer_is_exact() -> None:
    """With L = 1 every sample masks the one answer token, so the estimate is its exact CE."""
    model = _model()
    context, answer = [3, 4, 5, 6], [11]
    score = score_choices_dlm(model, context, [answer], MASK_ID, n_samples=8)[0]
    with torch.no_grad():
        logits = model(torch.tensor([context + [MASK_ID]]), causal=False)
    ref = float(F.log_softmax(logits[0, -1].double(), dim=-1)[answer[0]])
    assert score == pytest.approx(ref, abs=1e-5)


def test_dlm_two_token_answer_matches_enumerated_expectation() -> None:
    """L = 2: l = 1 (weight 2, either position) or l = 2 (weight 1), each with probability 1/2."""
    model = _model()
    ctx, (a, b) = [3, 4, 5], (11, 12)

    def ce(masked: list[int]) -> float:
        seq = ctx + [MASK_ID if i in masked else t for i, t in enumerate((a, b))]
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([seq]), causal=False)[0].double(), dim=-1)
        return -sum(float(logp[len(ctx) + i, (a, b)[i]]) for i in masked)

    expected = 0.5 * (2 * 0.5 * (ce([0]) + ce([1]))) + 0.5 * ce([0, 1])
    gen = torch.Generator().manual_seed(0)
    score = score_choices_dlm(
        model, ctx, [[a, b]], MASK_ID, n_samples=400, gen=gen, batch_size=128
    )[0]
    # Stratification fixes l exactly half/half; only the l = 1 position choice is random.
    assert -score == pytest.approx(expected, abs=0.15 * abs(ce([0]) - ce([1])) + 1e-4)


@pytest.mark.parametrize("kind", ["ar", "dlm"])
def test_mc_accuracy_and_margin(kind: str) -> None:
    model = FavouriteTokenModel()
    items = [
        {"context": [1, 2], "choices": [[3, 3], [7, 7], [5, 9]], "label": 1},  # right
        {"context": [1], "choices": [[7], [4]], "label": 1},  # wrong: 7 is preferred
        {"context": [1], "choices": [[7]], "label": 0},  # one choice: skipped
    ]
    out = mc_accuracy(model, items, kind, mask_id=MASK_ID, n_samples=4)
    assert out["n"] == 2
    assert out["acc"] == pytest.approx(0.5)
    logp = F.log_softmax(model.bias.detach().double(), dim=-1)
    # Item 1 margin: 2*(lp7 - lp3); item 2: lp4 - lp7. Both scorers are exact for this model.
    expected = (2 * (logp[7] - logp[3]) + (logp[4] - logp[7])) / 2
    assert out["margin"] == pytest.approx(float(expected), abs=1e-5)


def test_dlm_needs_a_mask_id() -> None:
    with pytest.raises(ValueError, match="mask_id"):
        mc_accuracy(_model(), [], "dlm")
