"""Response taps: forward hooks that collect each tapped layer's aggregated response.

Module paths are matched per dotted segment, so ``blocks.*`` matches ``blocks.3`` but not
``blocks.3.attn``, and ``layer*.*`` matches every residual block of a torchvision/timm ResNet.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import nn

POOLINGS = ("cls", "mean_tokens", "avg2d", "auto")


def match_modules(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Paths of ``model``'s submodules matching any dotted glob in ``patterns``, in model order."""
    split = [p.split(".") for p in patterns]
    out = []
    for name, _ in model.named_modules():
        parts = name.split(".") if name else []
        if any(len(p) == len(parts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, p)) for p in split):
            out.append(name)
    return out


def pool_response(x: torch.Tensor, pooling: str) -> torch.Tensor:
    """Aggregate one layer output to [B, d]: ``cls`` -> x[:, 0] of (B, N, C); ``mean_tokens`` ->
    mean over N; ``avg2d`` -> mean over H, W of (B, C, H, W); ``auto`` picks by rank."""
    if isinstance(x, (tuple, list)):
        x = x[-1]  # e.g. TNT blocks return (inner, outer): the outer (patch) tokens are the response
    if pooling == "auto":
        pooling = {2: "flat", 3: "mean_tokens", 4: "avg2d"}.get(x.ndim)
        if pooling is None:
            raise ValueError(f"cannot pool a response of shape {tuple(x.shape)}")
    if pooling == "flat":
        return x
    if pooling == "cls":
        return x[:, 0]
    if pooling == "mean_tokens":
        return x.mean(1)
    if pooling == "avg2d":
        return x.mean((2, 3))
    raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")


class ResponseTaps:
    """Hooks on the modules matching ``patterns``; after each forward of the root, ``responses``
    holds one pooled [B, d] tensor per tap, in model order."""

    def __init__(self, model: nn.Module, patterns: Sequence[str], pooling: str = "auto"):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.paths = match_modules(model, patterns)
        if not self.paths:
            children = [n for n, _ in model.named_children()]
            raise ValueError(f"ARR tap patterns {list(patterns)} match no module; top-level modules are {children}")
        self.pooling = pooling
        self.responses: list[torch.Tensor | None] = [None] * len(self.paths)
        self._handles = [model.register_forward_pre_hook(self._clear)]
        for i, path in enumerate(self.paths):
            self._handles.append(model.get_submodule(path).register_forward_hook(self._hook(i)))

    def _clear(self, _module, _args) -> None:
        self.responses = [None] * len(self.paths)

    def _hook(self, i: int):
        def hook(_module, _args, out):
            self.responses[i] = pool_response(out, self.pooling)
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
