"""Node classification (paper Table 5, left): GNNs on PyTorch Geometric, full-batch loops, AUC.

PyTorch Geometric is an optional extra (``pip install -e '.[graph]'``); it is imported only when a
graph model is built. ``dnrt.graph.build`` is imported by the engine when a node data set is used.
"""

from .loops import binary_auc, evaluate_nodes
from .models import GNN, GNN_NAMES, NodeTap, create_gnn, has_pyg

__all__ = ["GNN", "GNN_NAMES", "NodeTap", "binary_auc", "create_gnn", "evaluate_nodes", "has_pyg"]
