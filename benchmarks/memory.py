"""ARR class memory: vectorised ``ClassResponseMemory`` vs the one-by-one loop of docs/design.md §3.

Both sides do the same work per call: update the per-class means of ``taps`` memories from one
batch of responses and return every sample's target (the class mean after its own update).
"""

from __future__ import annotations

import torch

from dnrt.nn import ClassResponseMemory

from .timing import alternate, median, paired_ratio


class NaiveMemory:
    """docs/design.md §3 literally, one sample at a time in batch order (float32, like the module)::

        mu_k <- r if n_k == 0 else (1 - m) mu_k + m r;   n_k += 1;   target = mu_k
    """

    def __init__(self, num_classes: int, num_features: int, momentum: float = 0.1):
        self.mean = torch.zeros(num_classes, num_features)
        self.count = [0] * num_classes
        self.momentum = momentum

    def __call__(self, responses: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        m = self.momentum
        targets = torch.empty_like(responses)
        for i, (r, k) in enumerate(zip(responses.detach().unbind(0), labels.tolist())):
            mu = self.mean[k]
            if self.count[k] == 0:
                mu.copy_(r)
            else:
                mu.mul_(1.0 - m).add_(r, alpha=m)
            self.count[k] += 1
            targets[i] = mu
        return targets


def measure_memory_speedup(batch_size: int = 256, num_features: int = 192, num_classes: int = 100,
                           taps: int = 12, rounds: int = 7, warmup: int = 1, seed: int = 0) -> dict:
    """Seconds per training step's memory work (update + targets at ``taps`` memories) of the
    naive loop and of ``ClassResponseMemory``, interleaved; a fresh random batch each round."""
    g = torch.Generator().manual_seed(seed)
    n = warmup + rounds
    batches = [([torch.randn(batch_size, num_features, generator=g) for _ in range(taps)],
                torch.randint(0, num_classes, (batch_size,), generator=g)) for _ in range(n)]
    naive = [NaiveMemory(num_classes, num_features) for _ in range(taps)]
    # what dnrt.nn.ARR does each step: all taps' responses concatenated, one update with one label plan
    # (every tap sees the same labels, so per-tap results equal those of separate memories)
    vector = ClassResponseMemory(num_classes, taps * num_features, 0.1).train()
    state = {"naive": 0, "vectorised": 0}

    def run(kind: str) -> None:
        rs, y = batches[state[kind] % n]
        state[kind] += 1
        if kind == "naive":
            for r, memory in zip(rs, naive):
                memory(r, y)
        else:
            vector(torch.cat(rs, 1), y)

    with torch.no_grad():
        for _ in range(warmup):
            run("naive")
            run("vectorised")
        times = alternate({"naive": lambda: run("naive"), "vectorised": lambda: run("vectorised")}, rounds)
    return {
        **paired_ratio(times["naive"], times["vectorised"]),
        "naive_ms": round(1e3 * median(times["naive"]), 3),
        "vectorised_ms": round(1e3 * median(times["vectorised"]), 3),
        "naive_ms_samples": [round(1e3 * t, 3) for t in times["naive"]],
        "vectorised_ms_samples": [round(1e3 * t, 3) for t in times["vectorised"]],
        "batch_size": batch_size, "num_features": num_features, "num_classes": num_classes, "taps": taps,
        "torch_threads": torch.get_num_threads(),
    }
