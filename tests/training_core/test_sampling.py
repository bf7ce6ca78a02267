"""Samplers: greedy AR equals a manual argmax loop; DLM commits the most confident first."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training_core.model import Transformer, model_preset
from training_core.sampling import sample_ar, sample_dlm

torch.set_num_threads(1)
V = 24
MASK_ID = V - 1


def _model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(model_preset("tiny", V, 12))


def test_greedy_ar_matches_manual_argmax_loop_and_crops_to_seq_len() -> None:
    model, prompt = _model(), torch.tensor([1, 2, 3])
    out = sample_ar(model, prompt, max_new_tokens=14, temperature=0.0)
    assert out.shape == (1, 17) and torch.equal(out[0, :3], prompt)
    x = prompt[None]
    with torch.no_grad():
        for _ in range(14):
            nxt = model(x[:, -12:], causal=True)[:, -1].argmax(dim=-1, keepdim=True)
            x = torch.cat((x, nxt), dim=1)
    assert torch.equal(out, x)


def test_sampled_ar_is_reproducible_and_top_k_1_is_greedy() -> None:
    model, prompt = _model(), torch.tensor([[1, 2], [3, 4]])
    a = sample_ar(model, prompt, 6, temperature=1.0, gen=torch.Generator().manual_seed(5))
    b = sample_ar(model, prompt, 6, temperature=1.0, gen=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    top1 = sample_ar(model, prompt, 6, temperature=2.0, top_k=1, gen=torch.Generator())
    assert torch.equal(top1, sample_ar(model, prompt, 6, temperature=0.0))
    no_mask = sample_ar(model, prompt, 20, temperature=3.0, gen=torch.Generator(), mask_id=MASK_ID)
    assert (no_mask != MASK_ID).all()


class CountingModel(nn.Module):
    """Predicts token = (number of masks left in the row); more confident at later positions.

    So the generated text spells out the order in which positions were committed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx: Tensor, causal: bool) -> Tensor:
        B, T = idx.shape
        n_masked = (idx == MASK_ID).sum(dim=1)  # (B,)
        logits = torch.zeros(B, T, V)
        scale = torch.arange(1, T + 1, dtype=torch.float32)  # (T,)
        logits[torch.arange(B)[:, None], torch.arange(T)[None, :], n_masked[:, None]] = scale
        return logits


def test_dlm_low_confidence_remasking_commits_most_confident_first() -> None:
    prompt = torch.tensor([5, 6])
    out = sample_dlm(CountingModel(), prompt, gen_len=6, steps=6, mask_id=MASK_ID)
    # Last position is most confident: committed first, when 6 masks remained.
    assert out.tolist() == [[5, 6, 1, 2, 3, 4, 5, 6]]
    two_steps = sample_dlm(CountingModel(), prompt, gen_len=6, steps=2, mask_id=MASK_ID)
    assert two_steps.tolist() == [[5, 6, 3, 3, 3, 6, 6, 6]]


def test_dlm_sampling_fills_every_mask_and_keeps_the_prompt() -> None:
    model, prompt = _model(), torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = sample_dlm(
        model, prompt, 5, 3, MASK_ID, gen=torch.Generator().manual_seed(0), temperature=1.0
    )
    assert out.shape == (2, 8)
    assert torch.equal(out[:, :3], prompt) and (out != MASK_ID).all()
