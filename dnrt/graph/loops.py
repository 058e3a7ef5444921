"""Evaluation for node classification: loss, accuracy and ROC AUC per split, from one forward each.

Training needs no loop of its own: a :class:`~dnrt.data.dgraph.FullBatchLoader` yields one
``(view, labels)`` batch, so :func:`dnrt.engine.loops.train_one_epoch` takes one full-graph step
with CE (and ARR) on the training nodes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.amp import autocast
from ..nn import ARR
from ..tracking_schema import TEST_AUC, TEST_AUC_AT_MIN_VAL_LOSS, VAL_LOSS, VAL_LOSS_ARR, split_metric


def binary_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC (0-1) of ``scores`` [n] for ``labels`` [n] in {0, 1}, 1 the positive class: the
    Mann-Whitney statistic, tied scores counting one half (average ranks). NaN when a class is absent."""
    pos = labels == 1
    n_pos = int(pos.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    s = scores.double().flatten()
    order = s.argsort()
    _, group, counts = torch.unique_consecutive(s[order], return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of each tie group's last member
    ranks = torch.empty_like(s)
    ranks[order] = (last - (counts.double() - 1) / 2)[group]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def evaluate_nodes(model: nn.Module, loaders: dict, arr: ARR | None, device: torch.device,
                   amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """For each split in ``loaders`` (name -> FullBatchLoader): ``<split>/loss`` (CE),
    ``<split>/acc1`` and ``<split>/auc`` (fraud-vs-normal ROC AUC of softmax[:, 1], in %, as the
    paper prints it); with ARR also ``val/loss_arr`` against the stored class means."""
    model.eval()
    if arr is not None:
        arr.eval()
    out: dict[str, float] = {}
    for split, loader in loaders.items():
        for view, y in loader:
            with autocast(device, amp_dtype):
                logits = model(view).float()
                reg = arr(y) if arr is not None and split == "val" else None
            out[split_metric(split, "loss")] = float(F.cross_entropy(logits, y))
            out[split_metric(split, "acc1")] = 100.0 * float((logits.argmax(1) == y).float().mean())
            out[split_metric(split, "auc")] = 100.0 * binary_auc(logits.softmax(1)[:, 1], y)
            if reg is not None:
                out[VAL_LOSS_ARR] = float(reg)
    return out


def at_lowest_val_loss(history: list[dict[str, float]], metrics: dict[str, float]) -> dict[str, float]:
    """``test/auc_at_min_val_loss``: the test AUC of the epoch with the lowest ``val/loss`` so far
    (``history``: earlier epochs, ``metrics``: this one; the first such epoch on ties), as the
    DGraphFin baselines keep their predictions."""
    best = min([*history, metrics], key=lambda record: record[VAL_LOSS])  # min keeps the first
    return {TEST_AUC_AT_MIN_VAL_LOSS: best[TEST_AUC]}
