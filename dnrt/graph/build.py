"""Components of a node-classification run: the graph on the device, the GNN, ARR on node
embeddings, optimizer and schedule (one step per epoch), and the evaluation with AUC."""

from __future__ import annotations

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig

from ..config import ConfigError
from ..data.dgraph import NodeView
from ..engine.amp import amp_dtype, grad_scaler
from ..engine.build import Components, build_optimizer, build_scheduler, seed_everything, select_device
from ..engine.distributed import DistInfo
from ..nn import ARR
from ..preflight import act_spec, unknown_key
from .loops import evaluate_nodes

HEADLINE = "val/auc"


def sample_view(in_chans: int, device: torch.device) -> NodeView:
    """Two isolated nodes: the dry run that sizes ARR's memories."""
    return NodeView(torch.zeros(2, in_chans, device=device), torch.zeros(2, 0, dtype=torch.long, device=device),
                    torch.arange(2, device=device))


def build_graph_components(cfg: DictConfig, dist_info: DistInfo, data) -> Components:
    """Everything a full-batch node-classification run needs (``data``: a node data set)."""
    t = cfg.trainer
    if dist_info.world_size > 1:
        raise ConfigError(f"dataset={cfg.dataset.name}", "...", "full-batch node classification runs on one "
                          f"process, not {dist_info.world_size}")
    seed_everything(int(cfg.seed))
    device = select_device(t.device, dist_info)
    dtype = amp_dtype(t.amp, device)
    train_loader, val_loaders = data.loaders(t.batch_size, seed=cfg.seed, device=device)
    try:
        build = instantiate(cfg.model, _partial_=True, num_classes=data.num_classes, in_chans=data.in_chans)
        built = build(act=act_spec(cfg))
    except (InstantiationException, TypeError, ValueError) as exc:
        err = unknown_key("model", exc, get_method(cfg.model._target_), cfg.model)
        cause = exc.__cause__ or exc
        raise err or ConfigError("model.name", cfg.model.name, f"{type(cause).__name__}: {cause}") from exc
    model = built.model.to(device)
    arr = None
    if cfg.regularizer.name == "arr":
        arr = ARR(model, data.num_classes, taps=cfg.regularizer.taps or built.taps,
                  pooling=cfg.regularizer.pooling or built.pooling, momentum=cfg.regularizer.momentum,
                  sample=sample_view(data.in_chans, device)).to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, len(train_loader))
    runner = torch.compile(model) if t.compile else model
    return Components(data, runner, model, arr, optimizer, scheduler, train_loader, val_loaders, device, dtype,
                      grad_scaler(dtype, device), evaluate_fn=evaluate_nodes, headline=HEADLINE)
