"""Node classification (paper Table 5, left): GNNs on PyTorch Geometric, full-batch loops, AUC.

Importing this package registers the GNNs in the model registry and the ``node`` task in the task
registry (:mod:`dnrt.factory.tasks`). PyTorch Geometric is an optional extra
(``pip install -e '.[graph]'``); it is imported only when a graph model is built.
"""

from .build import build_graph_components
from .loops import binary_auc, evaluate_nodes
from .models import GNN, GNN_NAMES, NodeTap, create_gnn, has_pyg

__all__ = ["GNN", "GNN_NAMES", "NodeTap", "binary_auc", "build_graph_components", "create_gnn", "evaluate_nodes",
           "has_pyg"]
