"""Data files that are there but broken: a CIFAR batch cut in half, a meta file that is not a pickle,
a DGraphFin archive truncated, an ImageFolder class folder with an unreadable image. Each is refused
before any run (exit 2, one line naming the file), by ``--plan``, a single run and a sweep alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dnrt.config import ConfigError
from dnrt.preflight import check_run
from dnrt.testing import write_cifar10, write_graph, write_image_folder
from tests.harness.config import SMALL, compose_cfg

TINY = [*SMALL, "trainer.epochs=1", "trainer.batch_size=8"]


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_cifar_batch_is_refused_in_one_line_and_no_run_is_created(store, tmp_path):
    write_cifar10(tmp_path / "cifar10")
    bad = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    _cut(bad)
    args = [*TINY, "dataset=cifar10", f"data_dir={tmp_path}", *store.overrides()]
    why = f"{bad.resolve()}: truncated or corrupt (UnpicklingError: pickle data was truncated)"
    for command in (args, ["-m", "hydra/launcher=local", "seed=0,1", *args]):
        proc = store.launch(*command)
        lines = [line for line in proc.stderr.splitlines() if "data_batch_3" in line]
        assert proc.returncode == 2, (command, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and len(lines) >= 1 and why in lines[0], proc.stderr[-2000:]
    plan = json.loads(store.launch(*args, "--plan-json", check=True).stdout)
    [cell] = plan["cells"]
    assert cell["action"] == "refused" and why in cell["detail"]
    assert store.runs(children_only=False) == []  # no run, no sweep parent


def test_a_cifar_lt_source_and_meta_file_are_checked(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    cfg = compose_cfg([*TINY, "dataset=cifar10_lt", f"data_dir={tmp_path}"])
    check_run(cfg, fit=False)  # intact: accepted
    meta = tmp_path / "cifar10" / "cifar-10-batches-py" / "batches.meta"
    meta.write_text("not a pickle")
    with pytest.raises(ConfigError, match=f"{meta.resolve()}: truncated or corrupt"):
        check_run(compose_cfg([*TINY, "dataset=cifar10_lt", f"data_dir={tmp_path}"]), fit=False)


def test_a_truncated_dgraph_archive_is_refused_naming_it(tmp_path):
    path = tmp_path / "dgraphfin" / "dgraphfin.npz"
    write_graph(path)
    cfg = ["model=gcn", "dataset=dgraphfin", f"data_dir={tmp_path}", "trainer.progress=false"]
    check_run(compose_cfg(cfg), fit=False)
    _cut(path)
    with pytest.raises(ConfigError, match=f"{path.resolve()}: truncated or not an .npz archive"):
        check_run(compose_cfg(cfg), fit=False)
    write_graph(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "valid_mask"}
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match="keys valid_mask missing"):
        check_run(compose_cfg(cfg), fit=False)


def test_an_imagefolder_class_with_an_unreadable_image_is_refused(tmp_path):
    write_image_folder(tmp_path / "tree")
    cfg = [*TINY, "dataset=imagefolder", f"dataset.root={tmp_path / 'tree'}", "dataset.img_size=32"]
    check_run(compose_cfg(cfg), fit=False)
    for image in (tmp_path / "tree" / "train" / "dog").iterdir():
        image.write_bytes(b"")  # every image of one class is empty
    with pytest.raises(ConfigError, match=f"{(tmp_path / 'tree' / 'train' / 'dog').resolve()}: 0.jpg cannot be read"):
        check_run(compose_cfg(cfg), fit=False)
    for image in (tmp_path / "tree" / "train" / "dog").iterdir():
        image.unlink()  # a class folder left with no image at all
    with pytest.raises(ConfigError, match="no image files"):
        check_run(compose_cfg(cfg), fit=False)
