"""ARR against docs/design.md §3 written out one sample at a time (:class:`OneByOneARR`), over several
batches with repeated classes, two taps of different widths, then eval with an unseen class."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnrt.nn import ARR


class OneByOneARR:
    """Per tap, per class k: a running mean mu_k and count n_k; samples in batch order, one by one.
    Train: mu_k <- r if n_k == 0 else (1 - m) mu_k + m r; n_k += 1; target = mu_k after the update.
    Eval: nothing changes; target = stored mu_k; a class never seen contributes nothing (it is left
    out of the mean, numerator and denominator). Loss = mean over taps of mean |r - target|."""

    def __init__(self, widths, num_classes, momentum):
        self.mu = [torch.zeros(num_classes, d, dtype=torch.float64) for d in widths]
        self.n = [[0] * num_classes for _ in widths]
        self.m = momentum

    def __call__(self, responses, labels, train=True):
        """``responses``: one [B, d_j] tensor per tap (may require grad); returns the loss."""
        losses = []
        for r_tap, mu, n in zip(responses, self.mu, self.n):
            total, used = 0.0, 0
            for r, k in zip(r_tap.double(), labels.tolist()):
                if train:
                    mu[k] = r.detach() if n[k] == 0 else (1 - self.m) * mu[k] + self.m * r.detach()
                    n[k] += 1
                if n[k] == 0:
                    continue
                total = total + (r - mu[k]).abs().sum()
                used += 1
            losses.append(total / (used * r_tap.shape[1]) if used else torch.zeros((), dtype=torch.float64))
        return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in losses]).mean()


class TwoTaps(nn.Module):
    """x [B, 6] -> fc1 [B, 3] -> GELU -> fc2 [B, 7] -> head; ARR taps fc1 and fc2."""

    def __init__(self, num_classes):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(6, 3), nn.Linear(3, 7), nn.Linear(7, num_classes)

    def forward(self, x):
        return self.head(self.fc2(F.gelu(self.fc1(x))))


def reference_responses(params, x):
    """The two tapped outputs, computed from (copies of) the parameters without the model's hooks."""
    r1 = F.linear(x, params["fc1.weight"], params["fc1.bias"])
    return [r1, F.linear(F.gelu(r1), params["fc2.weight"], params["fc2.bias"])]


TRAIN_LABELS = [
    [2, 2, 2, 0, 2, 2, 2, 0, 2],  # mostly one class
    [1, 2, 2, 0, 1, 1, 1, 1, 3, 2, 2, 1],
    [3, 3, 3, 3, 3, 3, 0, 2, 1, 3],
]
EVAL_LABELS = [4, 0, 1, 4, 2, 3, 4]  # class 4 was never seen


@pytest.mark.parametrize("momentum", [0.1, 0.7])
def test_arr_equals_the_one_by_one_loop_over_batches_then_eval(momentum):
    torch.manual_seed(0)
    k = 5
    model = TwoTaps(k)
    arr = ARR(model, k, ["fc1", "fc2"], pooling="auto", momentum=momentum, sample=torch.zeros(2, 6))
    ref = OneByOneARR([3, 7], k, momentum)
    for step, labels in enumerate(TRAIN_LABELS + [EVAL_LABELS]):
        train = step < len(TRAIN_LABELS)
        arr.train(train)
        x, y = torch.randn(len(labels), 6), torch.tensor(labels)
        before = [(m.mean.clone(), m.count.clone()) for m in arr.memories]
        model.zero_grad()
        model(x)
        loss = arr(y)
        loss.backward()
        params = {n: p.detach().double().requires_grad_() for n, p in model.named_parameters()}
        expected = ref(reference_responses(params, x.double()), y, train=train)
        expected.backward()
        assert abs(loss.item() - expected.item()) < 1e-6, (step, loss.item(), expected.item())
        for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):  # targets are detached
            grad = model.get_parameter(name).grad
            torch.testing.assert_close(grad.double(), params[name].grad, rtol=1e-5, atol=1e-6)
        for tap, (memory, mu, n) in enumerate(zip(arr.memories, ref.mu, ref.n)):
            torch.testing.assert_close(memory.mean.double(), mu, rtol=0, atol=1e-6, msg=f"step {step} tap {tap}")
            assert memory.count.tolist() == n, (step, tap)
        if not train:  # eval writes nothing
            assert all(torch.equal(m.mean, b[0]) and torch.equal(m.count, b[1]) for m, b in zip(arr.memories, before))
    assert ref.n[0][4] == 0 and ref.n[0][2] > 5  # the schedule did exercise both cases


def test_eval_on_only_unseen_classes_is_zero_and_finite():
    model = TwoTaps(3)
    arr = ARR(model, 3, ["fc1", "fc2"], sample=torch.zeros(2, 6))
    model(torch.randn(4, 6))
    arr(torch.tensor([0, 0, 1, 0]))
    arr.eval()
    model(torch.randn(3, 6))
    assert arr(torch.tensor([2, 2, 2])).item() == 0.0
