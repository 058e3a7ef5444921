"""Data in the real on-disk formats, written from numbers: for trying the project without the data sets,
for benchmarks, and for the test suite (which checks the readers against these writers).

- :func:`write_cifar10`, :func:`write_cifar100`: the pickled batches of the original CIFAR archives;
- :func:`write_image_folder`: a ``train/``/``val/`` ImageFolder tree of PNG and JPEG files;
- :func:`write_graph`: a DGraphFin-layout ``.npz`` graph a GNN can learn;
- :func:`generate_sweep_store`: an MLflow store holding a finished sweep's runs (no training).

Each writer returns what it wrote, so a caller can compare a reader's output with it.
"""

from __future__ import annotations

import pickle
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tracking_schema import DETAIL_TAG, HASH_TAG, KIND_TAG, PARENT_TAG, RUN_NAME_TAG, SWEEP_KIND, SWEEP_TAG

__all__ = ["StoredSweep", "generate_sweep_store", "write_cifar10", "write_cifar100", "write_graph",
           "write_image_folder"]


# ----------------------------------------------------------------------------------------------------------
# Images


def _images(n: int, labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 [n, 3, 32, 32]: a smooth per-class pattern plus noise, so crops are distinguishable."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    base = np.stack([(yy * 7 + xx * 3) % 256, (xx * 11) % 256, (yy * 5 + 40) % 256]).astype(np.int64)
    out = base[None] + labels[:, None, None, None] * 13 + rng.integers(0, 60, (n, 3, 32, 32))
    return (out % 256).astype(np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_class_train: int = 4, per_class_test: int = 2) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` in the original layout: 5 train batches, ``test_batch``,
    ``batches.meta`` (bytes keys, as the Python 2 originals unpickle with ``encoding='bytes'``).

    Returns ``train_x`` [N, 3, 32, 32] uint8, ``train_y`` [N], ``test_x``, ``test_y``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_y = np.tile(np.arange(10), per_class_train)
    test_y = np.tile(np.arange(10), per_class_test)
    train_x, test_x = _images(train_y.size, train_y, 1), _images(test_y.size, test_y, 2)
    for b, chunk in enumerate(np.array_split(np.arange(train_y.size), 5), start=1):
        _dump(folder / f"data_batch_{b}", {
            b"batch_label": f"training batch {b} of 5".encode(),
            b"labels": train_y[chunk].tolist(),
            b"data": train_x[chunk].reshape(len(chunk), 3072),
            b"filenames": [f"img_{i}.png".encode() for i in chunk],
        })
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test_y.tolist(),
                                  b"data": test_x.reshape(-1, 3072),
                                  b"filenames": [f"t_{i}.png".encode() for i in range(test_y.size)]})
    _dump(folder / "batches.meta", {b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                    b"label_names": [f"class{i}".encode() for i in range(10)]})
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def write_cifar100(root: Path) -> dict[str, np.ndarray]:
    """``root/cifar-100-python`` in the original layout (``train``, ``test``, ``meta``): 200 training and
    100 test images, fine labels 0-99 and coarse labels 0-19. Returns ``{train,test}_{x,y}`` (fine)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", 200, 3), ("test", 100, 4)):
        fine = np.arange(n) % 100
        x = _images(n, fine, seed)
        _dump(folder / split, {b"filenames": [b"f.png"] * n, b"batch_label": split.encode(),
                               b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(),
                               b"data": x.reshape(n, 3072)})
        out[f"{split}_x"], out[f"{split}_y"] = x, fine
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    return out


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "emu"), per_class: int = 3,
                       per_class_val: int = 2, seed: int = 0) -> dict[str, list[np.ndarray | None]]:
    """``root/{train,val}/<class>/<i>.{png,jpg}``: random 32x32 RGB images, PNG and JPEG alternating.

    Returns, per class, the validation images in file order as uint8 [32, 32, 3] arrays; ``None`` for
    the JPEG files, whose pixels the lossy encoding changes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray | None]] = {}
    for split, count in (("train", per_class), ("val", per_class_val)):
        for c, cls in enumerate(classes):
            (Path(root) / split / cls).mkdir(parents=True)
            for i in range(count):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                ext = "png" if (i + c) % 2 == 0 else "jpg"
                Image.fromarray(arr).save(Path(root) / split / cls / f"{i}.{ext}")
                if split == "val":
                    written.setdefault(cls, []).append(arr if ext == "png" else None)
    return written


# ----------------------------------------------------------------------------------------------------------
# Graph


def write_graph(path: Path, n: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    """A DGraphFin-layout ``.npz`` at ``path`` (the file ``dataset=dgraphfin`` reads from
    ``<data_dir>/dgraphfin/dgraphfin.npz``): ``x`` [n, 17], labels ``y`` 0-3 (0/1 predicted), fraud nodes
    shifted in 4 features and linked mostly among themselves so a GNN can learn them, ``edge_index``
    [E, 2], and the splits as node-id arrays. Returns the arrays written."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=[0.45, 0.15, 0.25, 0.15])
    x = rng.normal(size=(n, 17)).astype(np.float32)
    x[y == 1, :4] += 1.5
    x[:, 5] = x[:, 5] * 30 + 100  # a badly scaled feature: the reader's standardisation must handle it
    src, dst = rng.integers(0, n, 3000), rng.integers(0, n, 3000)
    keep = ((y[src] == 1) == (y[dst] == 1)) | (rng.random(3000) < 0.2)
    edges = np.stack([src[keep], dst[keep]], 1)
    labelled = rng.permutation(np.flatnonzero(y < 2))
    a, b = int(0.6 * len(labelled)), int(0.8 * len(labelled))
    arrays = dict(x=x, y=y, edge_index=edges, edge_type=rng.integers(1, 12, len(edges)),
                  edge_timestamp=rng.integers(1, 800, len(edges)), train_mask=labelled[:a],
                  valid_mask=labelled[a:b], test_mask=labelled[b:])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


# ----------------------------------------------------------------------------------------------------------
# A finished sweep's runs


@dataclass(frozen=True)
class StoredSweep:
    """A sweep in an MLflow store: the store, its experiment, the sweep id, its parent run and its child runs' count
    (what :func:`generate_sweep_store` returns)."""

    uri: str
    experiment: str
    experiment_id: str
    sweep_id: str
    parent_run_id: str
    n_runs: int


def generate_sweep_store(uri: str, experiment: str, cells: list[dict[str, str]], seeds: list[int],
                         epochs: int = 3, failed: int = 0, rng_seed: int = 0,
                         extra_params: dict[str, str] | None = None) -> StoredSweep:
    """Write one sweep into the sqlite MLflow store ``uri``: a parent run and, per cell (param keys ->
    values, e.g. ``{"model.name": "vit_tiny", "act.name": "gelu", ...}``) and seed, a FINISHED run with the
    docs/design.md §4 names (params, tags, per-epoch ``val/acc1``, ``final/val_acc1``, ``best/val_acc1``);
    ``failed`` more runs (the first cells again, seed 99) end FAILED with a reason. Values are random
    (seeded by ``rng_seed``); read them back through MlflowClient.

    The rows go in through MLflow's own SQLAlchemy models (``mlflow.store.tracking.dbmodels``) in one
    transaction, not through ``MlflowClient``: the client commits each call separately, and a run takes
    three calls (create, log_batch, terminate), which makes a paper-scale store of 1,000 runs a matter of
    minutes instead of seconds (``benchmarks/analysis_scale.py`` prints the time this takes). The schema
    is the one MLflow migrates the file to first, through the client."""
    # here, not at the top: MLflow takes seconds to import, and the file writers above do not need it
    from mlflow import MlflowClient
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session


    rng = np.random.default_rng(rng_seed)
    client = MlflowClient(uri)  # creates and migrates the schema on first use
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    location = client.get_experiment(exp_id).artifact_location
    sweep_id = f"gen-{rng_seed}-{len(cells)}x{len(seeds)}"
    t0 = 1_700_000_000_000
    jobs = [(c, s, "FINISHED") for c in cells for s in seeds] + [(c, 99, "FAILED") for c in cells[:failed]]
    pid = uuid.uuid4().hex

    def run_row(run_id: str, name: str, status: str, start: int, end: int) -> SqlRun:
        return SqlRun(run_uuid=run_id, name=name, experiment_id=int(exp_id), status=status, start_time=start,
                      end_time=end, lifecycle_stage="active", artifact_uri=f"{location}/{run_id}/artifacts",
                      user_id="generated", source_name="", source_type="LOCAL", entry_point_name="",
                      source_version="")

    rows: list = [run_row(pid, f"sweep-{sweep_id}", "FINISHED", t0, t0 + len(jobs) * 60_000)]
    rows += [SqlTag(run_uuid=pid, key=k, value=v) for k, v in
             {SWEEP_TAG: sweep_id, KIND_TAG: SWEEP_KIND, RUN_NAME_TAG: f"sweep-{sweep_id}"}.items()]
    for i, (cell, seed, status) in enumerate(jobs):
        rid = uuid.uuid4().hex
        params = {"seed": str(seed), "trainer.epochs": str(epochs), "trainer.device": "cpu", "optim.lr": "0.001",
                  **(extra_params or {}), **cell}
        name = "-".join(params.get(k, "") for k in ("model.name", "act.name", "regularizer.name", "dataset.name"))
        start = t0 + i * 60_000
        tags = {PARENT_TAG: pid, SWEEP_TAG: sweep_id, HASH_TAG: f"{sweep_id}-{i}",
                DETAIL_TAG: "finished" if status == "FINISHED" else "failed: CUDA out of memory",
                RUN_NAME_TAG: f"{name}-s{seed}"}
        rows.append(run_row(rid, f"{name}-s{seed}", status, start, start + 45_000))
        rows += [SqlParam(run_uuid=rid, key=k, value=v) for k, v in params.items()]
        rows += [SqlTag(run_uuid=rid, key=k, value=v) for k, v in tags.items()]
        accs = np.clip(50 + 40 * rng.random() + np.cumsum(rng.normal(1.0, 0.5, epochs)), 0, 100)
        history = [("val/acc1", float(a), e + 1) for e, a in enumerate(accs)]
        if status == "FINISHED":
            history += [("final/val_acc1", float(accs[-1]), epochs), ("best/val_acc1", float(accs.max()), epochs)]
        latest = {}
        for key, value, step in history:
            rows.append(SqlMetric(run_uuid=rid, key=key, value=value, timestamp=start, step=step, is_nan=False))
            latest[key] = (value, step)
        rows += [SqlLatestMetric(run_uuid=rid, key=k, value=v, timestamp=start, step=s, is_nan=False)
                 for k, (v, s) in latest.items()]
    engine = create_engine(uri)
    with Session(engine) as session, session.begin():
        session.add_all(rows)
    engine.dispose()
    return StoredSweep(uri, experiment, exp_id, sweep_id, pid, len(jobs))
