"""GCN and GraphSAGE for node classification, on PyTorch Geometric's convolutions.

The activation between layers comes from the ``act`` group like any model's (``dnrt.nn.create_act``);
RAA sees node features [N, C] as tokens (one shift per node). ARR taps each hidden layer's node
embeddings through a :class:`NodeTap`, which receives only the nodes the forward pass reports on
(the labelled training nodes during training), so only they update the class means.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.dgraph import NodeView
from ..models.registry import BuiltModel, model_spec, register_model
from ..nn import ActSpec, create_act

# model.name -> the torch_geometric.nn convolution it stacks
GNN_CONVS = {"gcn": "GCNConv", "graphsage": "SAGEConv"}
GNN_NAMES = tuple(GNN_CONVS)
GNN_TAPS = ["taps.*"]  # every hidden layer's embeddings of the reported nodes


def has_pyg() -> bool:
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        return False
    return True


class NodeTap(nn.Identity):
    """Where ARR hooks a layer: called with that layer's embeddings of the reported nodes [n, C]."""


class GNN(nn.Module):
    """``num_layers`` graph convolutions; activation (and dropout) after each but the last.

    Args:
        conv: a ``torch_geometric.nn`` class name (``GCNConv``, ``SAGEConv``).
        in_chans: F, node feature size.
        num_classes: K.
        act: the activation (an :class:`ActSpec` or a registry name), one module per hidden layer.
        hidden: C, the hidden embedding size.
        num_layers: convolutions (>= 2).
        dropout: on hidden embeddings, training only.

    Call: ``model(view) -> logits [len(view.index), K]`` for a :class:`NodeView`.
    """

    def __init__(self, conv: str, in_chans: int, num_classes: int, act: ActSpec | str = "relu", hidden: int = 128,
                 num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        import torch_geometric.nn as pyg_nn

        if num_layers < 2:
            raise ValueError(f"model.num_layers must be >= 2 (one hidden layer), got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        cls = getattr(pyg_nn, conv)
        sizes = [in_chans] + [hidden] * (num_layers - 1) + [num_classes]
        self.convs = nn.ModuleList(cls(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.acts = nn.ModuleList(create_act(act, hidden, channel_dim=-1) for _ in range(num_layers - 1))
        self.taps = nn.ModuleList(NodeTap() for _ in range(num_layers - 1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, view: NodeView) -> torch.Tensor:
        h = view.x
        for conv, act, tap in zip(self.convs[:-1], self.acts, self.taps):
            h = act(conv(h, view.edge_index))
            tap(h.index_select(0, view.index))  # the response ARR sees: reported nodes only
            h = self.dropout(h)
        return self.convs[-1](h, view.edge_index).index_select(0, view.index)


def _register(name: str, conv: str) -> None:
    def build(in_chans: int, num_classes: int, act: ActSpec | str = "relu", hidden: int = 128, num_layers: int = 2,
              dropout: float = 0.0) -> GNN:
        return GNN(conv, in_chans, num_classes, act, hidden, num_layers, dropout)

    register_model(name, GNN_TAPS, family="gnn", task="node", note=f"torch_geometric.nn.{conv} layers")(build)


for _name, _conv in GNN_CONVS.items():
    _register(_name, _conv)


def create_gnn(name: str, num_classes: int, in_chans: int, act: ActSpec | str = "relu", hidden: int = 128,
               num_layers: int = 2, dropout: float = 0.0) -> BuiltModel:
    """Build the registered graph model ``name`` (``gcn`` | ``graphsage``); ARR taps every hidden layer
    (``taps.*``), one [n, C] response per node."""
    spec = model_spec(name)
    if spec is None or spec.task != "node":
        raise ValueError(f"unknown graph model {name!r}; valid: {', '.join(GNN_NAMES)}")
    model = spec.build(in_chans=in_chans, num_classes=num_classes, act=act or "relu", hidden=hidden,
                       num_layers=num_layers, dropout=dropout)
    return BuiltModel(model, spec.taps, spec.pooling, None)
