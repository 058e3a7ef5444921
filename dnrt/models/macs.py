"""Multiply-accumulates of one image through a model (paper Table 4, the fidelity report).

What is counted. ``torch.utils.flop_counter.FlopCounterMode`` counts matmul- and conv-like aten ops
(2 FLOPs per multiply-accumulate; MACs = FLOPs / 2, the paper's and timm's "GMACs" convention) and
nothing elementwise (activations, norms, softmax, residual adds). The count is split by op:

- ``weights``: ``aten.addmm``, ``aten.mm``, ``aten.convolution``: every nn.Linear and conv, plus
  RAA's shift w.x, which runs as a one-output linear (tokens) or 1x1 conv (maps): one MAC per element
  of each RAA input; RAA's other terms (+ b, x + s, Phi, x * Phi) are elementwise and not counted.
- ``attention``: ``aten.bmm`` / ``aten.baddbmm`` (the q.k^T and attention.v products). timm's fused
  attention (``F.scaled_dot_product_attention``) is switched off for the count: torch's counter
  counts the fused op on CUDA but not on the CPU, so without this the count would depend on the device.
- ``other``: anything else the counter knows.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

WEIGHT_OPS = ("addmm", "mm", "convolution")
ATTENTION_OPS = ("bmm", "baddbmm")


def _op_name(op) -> str:
    """``aten.addmm`` -> ``addmm`` (the counter keys its table by op packet)."""
    return str(op).split(".")[-1]


def count_macs(model: nn.Module, img_size: int = 224, in_chans: int = 3) -> dict:
    """MACs of one ``[1, in_chans, img_size, img_size]`` image through ``model`` in eval mode, on the
    model's device: ``{"weights", "attention", "other", "total": int, "by_op": {op: int}}``.

    The model is left as it was (training flag, fused attention, ``requires_grad``).
    """
    fused = {m: m.fused_attn for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)}
    # Frozen rather than under no_grad: the counter's module tracker fails on views of trainable
    # parameters made under no_grad (CaiT's class token).
    trainable = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    try:
        for m in fused:
            m.fused_attn = False
        for p in trainable:
            p.requires_grad_(False)
        model.eval()
        with counter:
            model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    finally:
        for m, value in fused.items():
            m.fused_attn = value
        for p in trainable:
            p.requires_grad_(True)
        model.train(was_training)
    by_op = {_op_name(op): int(n) // 2 for op, n in counter.get_flop_counts()["Global"].items()}
    weights = sum(v for k, v in by_op.items() if k in WEIGHT_OPS)
    attention = sum(v for k, v in by_op.items() if k in ATTENTION_OPS)
    total = counter.get_total_flops() // 2
    return {"weights": weights, "attention": attention, "other": total - weights - attention, "total": total,
            "by_op": by_op}
