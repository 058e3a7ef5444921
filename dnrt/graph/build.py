"""The node-classification task: the graph on the device, the GNN, ARR on node embeddings, optimizer
and schedule (one step per epoch), and the evaluation with AUC. Registered in the task registry
(:mod:`dnrt.factory.tasks`) when :mod:`dnrt.graph` is imported."""

from __future__ import annotations

import torch

from ..config import ConfigError
from ..data.dgraph import NodeView
from ..engine.amp import grad_scaler
from ..factory import CheckedRun, Task, build_arr, build_model, build_optimizer, build_scheduler, register_task
from ..types import Components, DistInfo
from .loops import at_lowest_val_loss, evaluate_nodes
from .models import has_pyg


def sample_view(in_chans: int, device: torch.device) -> NodeView:
    """Two isolated nodes: the dry run that sizes ARR's memories."""
    return NodeView(torch.zeros(2, in_chans, device=device), torch.zeros(2, 0, dtype=torch.long, device=device),
                    torch.arange(2, device=device))


def build_graph_components(run: CheckedRun, dist_info: DistInfo, device: torch.device,
                           dtype: torch.dtype | None) -> Components:
    """Everything a full-batch node-classification run needs (``run.data``: a node data set; seeding,
    the device and the autocast dtype come from :func:`dnrt.factory.build_components`)."""
    cfg, data, trainer = run.cfg, run.data, run.cfg.trainer
    if dist_info.world_size > 1:
        raise ConfigError(f"dataset={cfg.dataset.name}", "...", "full-batch node classification runs on one "
                          f"process, not {dist_info.world_size}")
    train_loader, val_loaders = data.loaders(trainer.batch_size, seed=cfg.seed, device=device)
    built = build_model(cfg, f"cannot be built for dataset={cfg.dataset.name}", num_classes=data.num_classes,
                        in_chans=data.in_chans)
    model = built.model.to(device)
    arr = build_arr(cfg, model, built, data.num_classes, sample_view(data.in_chans, device), device)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, len(train_loader))
    runner = torch.compile(model) if trainer.compile else model
    return Components(data, runner, model, arr, optimizer, scheduler, train_loader, val_loaders, device, dtype,
                      grad_scaler(dtype, device), evaluate_fn=evaluate_nodes, headline=data.headline,
                      epoch_metrics=at_lowest_val_loss)


def _missing_pyg() -> str | None:
    return None if has_pyg() else "needs PyTorch Geometric: pip install -e '.[graph]'"


NODE = register_task(Task("node", "graph", build_graph_components, check_fit=None, missing_extra=_missing_pyg))
