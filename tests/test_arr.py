import copy

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


def test_loss_is_zero_when_every_response_equals_its_class_mean():
    torch.manual_seed(0)
    model = Tiny()
    arr = ARR(model, 2, ["blocks.*"], pooling="mean_tokens", momentum=0.3, sample=torch.zeros(2, 3, 4))
    x = torch.randn(1, 3, 4).repeat(6, 1, 1)  # identical samples => identical responses
    y = torch.zeros(6, dtype=torch.long)
    model(x)
    assert arr(y).item() == pytest.approx(0.0, abs=1e-7)
    model(x + 1)  # responses now differ from the stored mean
    assert arr(y).item() > 1e-3


def test_loss_is_mean_over_taps_of_mean_abs_error_and_has_gradient():
    torch.manual_seed(1)
    model = Tiny()
    arr = ARR(model, 3, ["blocks.*"], pooling="cls", momentum=0.5, sample=torch.zeros(2, 3, 4))
    x, y = torch.randn(8, 3, 4), torch.randint(0, 3, (8,))
    model(x)
    responses = [r.detach().clone() for r in arr.taps.responses]
    before = copy.deepcopy(arr.memories)  # targets come from the memory as it was before this batch
    loss = arr(y)
    expected = torch.stack([(r - m(r, y)).abs().mean() for r, m in zip(responses, before)]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert model.blocks[0][0].weight.grad.abs().sum() > 0
