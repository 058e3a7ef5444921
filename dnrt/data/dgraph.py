"""DGraphFin (the financial fraud graph of Table 5, left) for full-batch node classification.

The release is one file, ``<root>/dgraphfin.npz``, holding::

    x               float [N, 17]   node features
    y               int   [N]       0 normal, 1 fraud, 2 and 3 background users (not predicted)
    edge_index      int   [E, 2]    directed edges (id_a, id_b), ids index x
    edge_type       int   [E]       11 edge types (not used by GCN / GraphSAGE)
    edge_timestamp  int   [E]       desensitised times (not used)
    train_mask, valid_mask, test_mask   int [n_split]: node ids of each split (boolean masks accepted)

The task is fraud (1) vs normal (0): ``num_classes`` is 2, and only split nodes labelled 0 or 1
count. Background nodes stay in the graph and pass messages. As in the DGraphFin baselines, features
are standardised over all nodes and the adjacency is made symmetric. The whole graph is one batch:
an epoch is one optimiser step, the loss taken on the training nodes.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..tracking_schema import TEST_AUC_AT_MIN_VAL_LOSS, VAL_AUC
from .base import DataFileError, DatasetNotFoundError, file_key

log = logging.getLogger(__name__)

FILE = "dgraphfin.npz"
REQUIRED = ("x", "y", "edge_index", "train_mask", "valid_mask", "test_mask")
SPLITS = {"train": "train_mask", "val": "valid_mask", "test": "test_mask"}


@functools.lru_cache(maxsize=8)
def _archive_problem(key: tuple[str, int, int]) -> str | None:
    """What is wrong with the DGraphFin archive ``key[0]`` (None: nothing): every key the task reads
    is there and its array can be read whole."""
    try:
        with np.load(key[0]) as npz:
            missing = [k for k in REQUIRED if k not in npz.files]
            if missing:
                return f"not the DGraphFin release: keys {', '.join(missing)} missing (it needs {', '.join(REQUIRED)})"
            for k in REQUIRED:
                try:
                    npz[k]
                except Exception as exc:  # noqa: BLE001
                    return f"key {k!r} cannot be read, truncated or corrupt ({type(exc).__name__}: {exc})"
    except Exception as exc:  # noqa: BLE001  (not a zip archive at all)
        return f"truncated or not an .npz archive ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    return None


@dataclass
class NodeView:
    """The whole graph plus the nodes a forward pass reports on: x [N, F], edge_index [2, E],
    index [n] (long). A node model returns logits [n, K] for ``index`` only."""

    x: torch.Tensor
    edge_index: torch.Tensor
    index: torch.Tensor


class FullBatchLoader:
    """One batch per epoch: ``(view, labels)``, labels [n] of the view's nodes, on the device."""

    def __init__(self, view: NodeView, labels: torch.Tensor):
        self.view, self.labels = view, labels

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield self.view, self.labels

    def set_epoch(self, epoch: int) -> None:
        """Nothing to reshuffle: the batch is the whole graph."""


def symmetric(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """[2, E] -> [2, E'] with every reverse edge added, duplicates removed, sorted by (src, dst)."""
    both = torch.cat([edge_index, edge_index.flip(0)], 1)
    key = torch.unique(both[0] * num_nodes + both[1])
    return torch.stack([key // num_nodes, key % num_nodes])


def split_index(arr: np.ndarray, num_nodes: int) -> torch.Tensor:
    """A split as node ids (long [n]), from either an id array or a boolean mask."""
    t = torch.as_tensor(np.asarray(arr))
    if t.dtype == torch.bool:
        if t.numel() != num_nodes:
            raise ValueError(f"a boolean split mask must have {num_nodes} entries, got {t.numel()}")
        return t.nonzero().flatten()
    return t.long().flatten()


# The metric a run is judged by: the last epoch's validation AUC, or the test AUC at the epoch of
# lowest validation loss (the only epoch selection in the DGraphFin baselines' code).
HEADLINES = (VAL_AUC, TEST_AUC_AT_MIN_VAL_LOSS)


class DGraphFinData:
    """DGraphFin from ``<root>/dgraphfin.npz`` (see the module docstring for the layout).

    Args:
        name: the data set's name in run names and params.
        root: the folder holding ``dgraphfin.npz``.
        standardize: z-score each feature over all nodes (the baselines' preprocessing).
        undirected: add every edge's reverse (the baselines' symmetric adjacency).
    """

    task = "node"  # node classification: built by dnrt.graph, not by the image path

    def __init__(self, name: str = "dgraphfin", root: str = "data/dgraphfin", standardize: bool = True,
                 undirected: bool = True, headline: str = VAL_AUC):
        if headline not in HEADLINES:
            raise ValueError(f"dataset.headline must be one of {HEADLINES}, got {headline!r}")
        self.headline = headline
        self.name = str(name)
        self.root = Path(root)
        self.standardize = bool(standardize)
        self.undirected = bool(undirected)
        self._graph: dict[str, torch.Tensor] | None = None
        self._checked = False  # check_files opens the archive: once per object

    @property
    def path(self) -> Path:
        return self.root / FILE

    def check_files(self) -> None:
        """Raise :class:`DatasetNotFoundError` (saying where the file goes) unless the file is there
        with every key the task reads; reads only the archive's directory."""
        if self._checked:
            return
        where = self.path.resolve()
        if not self.path.is_file():
            raise DatasetNotFoundError(
                f"DGraphFin not found: expected the file {where}. It cannot be downloaded automatically: get "
                f"DGraphFin from https://dgraph.xinye.com (registration), unzip it and place {FILE} in "
                f"{where.parent}, or point dataset.root (or data_dir / $DNRT_DATA_DIR) at the folder holding it.")
        problem = _archive_problem(file_key(self.path))
        if problem is not None:
            raise DataFileError(f"{where}: {problem}")
        self._checked = True

    @property
    def num_classes(self) -> int:
        self.check_files()
        return 2  # fraud vs normal; background classes 2 and 3 are not predicted

    @property
    def in_chans(self) -> int:
        return int(self.graph()["x"].shape[1])

    def graph(self) -> dict[str, torch.Tensor]:
        """x [N, F] float32, edge_index [2, E] long and one id tensor per split (labels 0/1 only), read once."""
        if self._graph is None:
            self.check_files()
            with np.load(self.path) as npz:
                x = torch.as_tensor(npz["x"], dtype=torch.float32)
                y = torch.as_tensor(npz["y"]).long().flatten()
                edges = torch.as_tensor(npz["edge_index"]).long()
                splits = {s: split_index(npz[k], x.shape[0]) for s, k in SPLITS.items()}
            if edges.ndim != 2 or 2 not in edges.shape:
                raise ValueError(f"{self.path}: edge_index must be [E, 2], got {tuple(edges.shape)}")
            edges = edges.t() if edges.shape[1] == 2 and edges.shape[0] != 2 else edges
            if self.standardize:
                x = (x - x.mean(0)) / x.std(0).clamp(min=1e-12)  # a constant feature stays 0, not NaN
            if self.undirected:
                edges = symmetric(edges, x.shape[0])
            graph = {"x": x, "y": y, "edge_index": edges.contiguous()}
            for s, ids in splits.items():
                keep = ids[(y[ids] == 0) | (y[ids] == 1)]
                if keep.numel() < ids.numel():
                    log.info("%s: %d %s nodes without a 0/1 label left out", self.name, ids.numel() - keep.numel(), s)
                graph[s] = keep
            self._graph = graph
        return self._graph

    def loaders(self, batch_size: int, seed: int, device: torch.device | str, rank: int = 0,
                world_size: int = 1, workers: int = 0) -> tuple[FullBatchLoader, dict[str, FullBatchLoader]]:
        """The train loader and one evaluation loader per split (``val``, ``test``). The graph is
        one batch, so ``batch_size``, ``seed`` and ``workers`` change nothing."""
        if world_size != 1:
            raise ValueError("full-batch node classification runs on one process (world size 1)")
        g = self.graph()
        x, edges, y = g["x"].to(device), g["edge_index"].to(device), g["y"].to(device)

        def loader(split: str) -> FullBatchLoader:
            idx = g[split].to(device)
            return FullBatchLoader(NodeView(x, edges, idx), y[idx])

        return loader("train"), {"val": loader("val"), "test": loader("test")}
