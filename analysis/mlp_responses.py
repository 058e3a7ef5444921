"""Hooks on the MLP activations of chosen transformer layers (the paper's Figure 2a).

Layer ``k`` is 1-based, as the paper counts: the k-th module whose path ends in ``mlp.act`` in model
order, i.e. ``blocks[k-1].mlp.act`` in a plain ViT (GELU there, or the RAA that replaced it). Each
call's output, [B, N, hidden], is reduced to one [B, hidden] row per image by the model's own ARR
pooling: the class token (``cls``: token 0) where the model has one, else the token mean
(``mean_tokens``; e.g. PVT v2, CaiT's patch-only blocks). docs/design.md §3 names the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dnrt.nn.taps import pool_response

from .runs import AnalysisError

MLP_ACT_SUFFIX = "mlp.act"


def mlp_act_paths(model: nn.Module) -> list[str]:
    """Paths of the MLP activation modules, in model order (one per transformer layer)."""
    return [name for name, _ in model.named_modules() if name == MLP_ACT_SUFFIX or name.endswith("." + MLP_ACT_SUFFIX)]


def resolve_layers(model: nn.Module, layers: Sequence[int], model_name: str = "model") -> dict[int, str]:
    """1-based layer -> module path; a layer the model does not have is an :class:`AnalysisError`
    naming the valid range."""
    paths = mlp_act_paths(model)
    if not paths:
        raise AnalysisError(f"{model_name} has no transformer MLP activation (no module path ending in "
                            f"'{MLP_ACT_SUFFIX}'): Figure 2a needs a ViT-style model")
    bad = [k for k in layers if not 1 <= int(k) <= len(paths)]
    if bad:
        raise AnalysisError(f"layer {', '.join(map(str, bad))} does not exist in {model_name}: it has "
                            f"{len(paths)} MLP layers; valid layers: 1-{len(paths)} (1 = {paths[0]})")
    return {int(k): paths[int(k) - 1] for k in layers}


class MlpActTaps:
    """Forward hooks on the MLP activations of ``layers``; ``values[k]`` collects one pooled
    float32 [B, hidden] CPU tensor per forward. Call :meth:`remove` when done."""

    def __init__(self, model: nn.Module, layers: Sequence[int], pooling: str, model_name: str = "model"):
        self.paths = resolve_layers(model, layers, model_name)
        self.pooling = pooling
        self.values: dict[int, list[torch.Tensor]] = {k: [] for k in self.paths}
        self._handles = [model.get_submodule(path).register_forward_hook(self._hook(k))
                         for k, path in self.paths.items()]

    def _hook(self, layer: int):
        def hook(_module, _args, out):
            self.values[layer].append(pool_response(out, self.pooling).detach().float().cpu())
        return hook

    def arrays(self) -> dict[int, torch.Tensor]:
        """Layer -> float32 [N, hidden]: every forward's rows, in order."""
        return {k: torch.cat(v) if v else torch.zeros(0) for k, v in self.values.items()}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
