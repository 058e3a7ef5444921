"""Training-step cost of act x regulariser configurations: fwd + bwd + AdamW step at 32 px.

Every configuration of one model gets the same input batch, the same optimizer and the same
number of warm-up steps; the timed steps of all configurations are interleaved (see
:func:`benchmarks.timing.alternate`).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from torch import nn

from dnrt.models import create_model
from dnrt.nn import ARR

from .timing import PeakRSS, alternate, median

NUM_CLASSES = 10
IMG_SIZE = 32
ARR_WEIGHT = 10.0
# (act, regulariser); the first is the baseline every ratio divides by
CONFIGS: tuple[tuple[str, str], ...] = (("gelu", "none"), ("gelu", "arr"), ("raa", "none"), ("raa", "arr"))


def label(act: str, reg: str) -> str:
    return f"{act}+{reg}"


@dataclass
class Case:
    """One model x act x regulariser, ready to step."""

    name: str
    model: nn.Module  # what is called: the module, or its torch.compile wrapper
    arr: ARR | None
    optimizer: torch.optim.Optimizer

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step: ``ce + 10 * arr(y)`` (ARR memory updated), backward, AdamW step."""
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        if self.arr is not None:
            loss = loss + ARR_WEIGHT * self.arr(y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def build_case(model_name: str, act: str, reg: str, compile_backend: str | None = None, seed: int = 0,
               device: torch.device | str = "cpu", channels_last: bool = False) -> Case:
    """The model as ``dnrt.models.create_model`` builds it, ARR on its default taps when
    ``reg == "arr"``, timm AdamW; ``compile_backend`` wraps the model in ``torch.compile`` after
    the ARR hooks are registered, as the trainer does."""
    torch.manual_seed(seed)
    built = create_model(model_name, num_classes=NUM_CLASSES, img_size=IMG_SIZE, act=act)
    model = built.model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    arr = None
    if reg == "arr":
        arr = ARR(model, NUM_CLASSES, built.taps, built.pooling, momentum=0.1,
                  sample=torch.zeros(2, 3, IMG_SIZE, IMG_SIZE, device=device)).to(device).train()
    elif reg != "none":
        raise ValueError(f"unknown regulariser {reg!r}")
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    called = torch.compile(model, backend=compile_backend) if compile_backend else model
    return Case(label(act, reg), called, arr, optimizer)


def fixed_batch(batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalised-looking CIFAR-shaped batch and labels over all 10 classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, IMG_SIZE, IMG_SIZE, generator=g)
    y = torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)
    return x, y


@dataclass
class StepResult:
    """Per configuration: seconds per step (one sample per round), warm-up figures."""

    model: str
    batch_size: int
    step_s: dict[str, list[float]]
    first_step_s: dict[str, float]
    peak_rss_mib: dict[str, float]
    compile_counters: dict[str, dict[str, int]] = field(default_factory=dict)

    def images_per_s(self) -> dict[str, float]:
        return {k: round(self.batch_size / median(v), 1) for k, v in self.step_s.items()}

    def to_json(self) -> dict:
        return {
            "model": self.model, "batch_size": self.batch_size,
            "median_step_s": {k: round(median(v), 4) for k, v in self.step_s.items()},
            "step_s_samples": {k: [round(s, 4) for s in v] for k, v in self.step_s.items()},
            "images_per_s": self.images_per_s(),
            "first_step_s": {k: round(v, 3) for k, v in self.first_step_s.items()},
            "peak_rss_delta_mib": self.peak_rss_mib,
            **({"compile_counters": self.compile_counters} if self.compile_counters else {}),
        }


def _dynamo_counters() -> dict[str, int]:
    from torch._dynamo.utils import counters

    keep = {}
    for group in ("inductor", "aot_autograd", "stats"):
        for k, v in counters.get(group, {}).items():
            if "cache" in k or k in ("unique_graphs", "calls_captured"):
                keep[f"{group}.{k}"] = int(v)
    keep["graph_breaks"] = int(sum(counters.get("graph_break", {}).values()))
    return keep


def measure_steps(model_name: str, configs: tuple[tuple[str, str], ...], batch_size: int, warmup: int,
                  rounds: int, calls: int, compile_backend: str | None = None) -> StepResult:
    """Build each configuration in turn and warm it up (first step timed alone: under
    ``torch.compile`` it includes compilation; peak RSS over the warm-up), then time all of them
    interleaved, ``rounds`` samples of ``calls`` steps each."""
    x, y = fixed_batch(batch_size)
    cases: dict[str, Case] = {}
    first: dict[str, float] = {}
    peak: dict[str, float] = {}
    counters: dict[str, dict[str, int]] = {}
    for act, reg in configs:
        if compile_backend:
            from torch._dynamo.utils import counters as dyn_counters

            dyn_counters.clear()
        case = build_case(model_name, act, reg, compile_backend)
        gc.collect()
        with PeakRSS() as rss:
            first[case.name] = alternate({case.name: lambda c=case: c.step(x, y)}, 1)[case.name][0]
            for _ in range(max(0, warmup - 1)):
                case.step(x, y)
        peak[case.name] = rss.delta_mib
        if compile_backend:
            counters[case.name] = _dynamo_counters()
        cases[case.name] = case
    times = alternate({n: (lambda c=c: c.step(x, y)) for n, c in cases.items()}, rounds, calls)
    return StepResult(model_name, batch_size, times, first, peak, counters)
