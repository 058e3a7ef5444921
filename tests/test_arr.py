import pytest
import torch
from torch import nn

from dnrt.nn import ARR, match_modules


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.GELU()) for _ in range(3)])
        self.head = nn.Linear(4, 2)

    def forward(self, x):  # x: (B, N, 4)
        return self.head(self.blocks(x).mean(1))


def test_glob_taps_match_one_segment_per_star():
    model = Tiny()
    assert match_modules(model, ["blocks.*"]) == ["blocks.0", "blocks.1", "blocks.2"]
    assert match_modules(model, ["blocks.*.1"]) == ["blocks.0.1", "blocks.1.1", "blocks.2.1"]
    with pytest.raises(ValueError, match="match no module"):
        ARR(model, 2, ["layer*.*"], sample=torch.zeros(2, 3, 4))


def test_repeated_identical_samples_follow_the_closed_form():
    """One class, identical samples: batch 1 initialises mu0 = r and costs nothing; in batch 2
    (responses r') the j-th sample's target is r' + (1 - m)^j (mu0 - r'), so per tap
    L = mean_j (1 - m)^j * mean |mu0 - r'|."""
    torch.manual_seed(0)
    model, m = Tiny(), 0.3
    arr = ARR(model, 2, ["blocks.*"], pooling="mean_tokens", momentum=m, sample=torch.zeros(2, 3, 4))
    x = torch.randn(1, 3, 4).repeat(6, 1, 1)  # identical samples => identical responses
    y = torch.zeros(6, dtype=torch.long)
    model(x)
    first = [r[0].detach().clone() for r in arr.taps.responses]
    assert arr(y).item() == 0.0
    model(x + 1)
    second = [r[0].detach().clone() for r in arr.taps.responses]
    decay = sum((1 - m) ** j for j in range(1, 7)) / 6
    expected = sum(decay * (a - b).abs().mean().item() for a, b in zip(first, second)) / 3
    assert expected > 1e-2  # the responses did move
    assert arr(y).item() == pytest.approx(expected, rel=1e-5)
