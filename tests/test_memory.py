import pytest
import torch

from dnrt.nn import ClassResponseMemory


class NaiveMemory:
    """docs/design.md §3 literally: one sample at a time, in batch order."""

    def __init__(self, k, d, m):
        self.mu = torch.zeros(k, d, dtype=torch.float64)
        self.n = torch.zeros(k, dtype=torch.long)
        self.m = m

    def __call__(self, r, y, train=True):
        out = []
        for ri, yi in zip(r.double(), y.tolist()):
            if train:
                self.mu[yi] = ri if self.n[yi] == 0 else (1 - self.m) * self.mu[yi] + self.m * ri
                self.n[yi] += 1
            out.append(self.mu[yi].clone() if self.n[yi] > 0 else ri.clone())
        return torch.stack(out)


def _batches(seed):
    g = torch.Generator().manual_seed(seed)
    yield torch.randn(7, 5, generator=g), torch.tensor([2, 2, 2, 2, 0, 2, 0])  # many of one class
    yield torch.randn(64, 5, generator=g), torch.randint(0, 4, (64,), generator=g)  # class 4, 5 unseen
    yield torch.randn(40, 5, generator=g), torch.full((40,), 3)  # one class only
    yield torch.randn(1, 5, generator=g), torch.tensor([1])


@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0])
def test_vectorised_memory_equals_the_one_by_one_loop(momentum):
    mem = ClassResponseMemory(6, 5, momentum)
    naive = NaiveMemory(6, 5, momentum)
    for r, y in _batches(0):
        got = mem(r, y)
        assert torch.allclose(got.double(), naive(r, y), rtol=0, atol=1e-6)
        assert torch.allclose(mem.mean.double(), naive.mu, rtol=0, atol=1e-6)
        assert torch.equal(mem.count, naive.n)
    mem.eval()  # eval: reads, never writes; unseen classes (4, 5) get their own response
    r, y = torch.randn(12, 5), torch.tensor([0, 1, 2, 3, 4, 5] * 2)
    before = mem.mean.clone(), mem.count.clone()
    assert torch.allclose(mem(r, y).double(), naive(r, y, train=False), rtol=0, atol=1e-6)
    assert torch.equal(mem.mean, before[0]) and torch.equal(mem.count, before[1])


def test_state_dict_round_trip_restores_identical_memory():
    mem = ClassResponseMemory(4, 3)
    mem(torch.randn(20, 3), torch.randint(0, 4, (20,)))
    fresh = ClassResponseMemory(4, 3)
    fresh.load_state_dict(mem.state_dict())
    assert set(mem.state_dict()) == {"mean", "count"}
    assert torch.equal(fresh.mean, mem.mean) and torch.equal(fresh.count, mem.count)
    r, y = torch.randn(9, 3), torch.randint(0, 4, (9,))
    assert torch.equal(fresh(r, y), mem(r, y))


def test_targets_are_detached_and_bad_inputs_are_named():
    mem = ClassResponseMemory(3, 4)
    r = torch.randn(5, 4, requires_grad=True)
    assert not mem(r, torch.tensor([0, 1, 2, 0, 1])).requires_grad
    with pytest.raises(ValueError, match=r"responses must be \[B, 4\]"):
        mem(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\).*\[0, 3\]"):
        mem(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels must be in"):
        mem(torch.randn(2, 4), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="momentum"):
        ClassResponseMemory(3, 4, momentum=0.0)
