"""The paper presets' data side against the authors' code (docs/fidelity.md): the ImageNet evaluation
resize, the last-batch rule and the CIFAR-10-LT subset, each checked against a reference written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from dnrt.config import signed_params
from dnrt.data import DeviceLoader
from dnrt.data.longtail import long_tail_counts, long_tail_indices
from dnrt.testing import write_cifar10
from tests.harness.config import CONF, compose_cfg

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _photo_tree(root: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            path = root / split / cls / "0.png"
            Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths[2:]


def _eval_reference(path: Path, mode) -> torch.Tensor:
    """Resize(256) + CenterCrop(224) with torchvision, ImageNet normalisation."""
    from torchvision import transforms as T

    tf = T.Compose([T.Resize(256, interpolation=mode), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return tf(Image.open(path).convert("RGB"))


def _val_batch(overrides: list[str]) -> torch.Tensor:
    data = instantiate(compose_cfg(overrides).dataset)
    _, val = data.loaders(2, seed=0, device="cpu")
    (x, _), = list(val)
    return x


@pytest.mark.parametrize("preset", ["paper_vit", "paper_imagenet1k"])
def test_imagenet_evaluation_resize_is_bilinear_in_the_presets_and_bicubic_by_default(tmp_path, preset):
    from torchvision.transforms import InterpolationMode as M

    val_paths = _photo_tree(tmp_path / "imagenet")
    dataset = ["dataset=imagenet100"] if preset == "paper_vit" else []
    paper = _val_batch([f"experiment={preset}", *dataset, f"dataset.root={tmp_path / 'imagenet'}"])
    default = _val_batch(["dataset=imagenet100", f"dataset.root={tmp_path / 'imagenet'}"])
    bilinear = torch.stack([_eval_reference(p, M.BILINEAR) for p in val_paths])
    bicubic = torch.stack([_eval_reference(p, M.BICUBIC) for p in val_paths])
    torch.testing.assert_close(paper, bilinear, rtol=0, atol=1e-6)
    torch.testing.assert_close(default, bicubic, rtol=0, atol=1e-6)
    assert (bilinear - bicubic).abs().max() > 0.05  # the two kernels are told apart on these photos


def _authors_steps(n: int, batch: int) -> int:
    """The authors' DataLoader: drop_last = len(dataset) % 2 or batch % 2."""
    drop = bool(n % 2 or batch % 2)
    return n // batch if drop else -(-n // batch)


@pytest.mark.parametrize("n,batch", [(50, 8), (51, 8), (50, 7), (64, 16), (20_431, 256), (12_406, 256)])
def test_odd_drop_last_is_the_authors_rule(n, batch):
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(n, dtype=torch.long), batch_size=batch, device="cpu", mean=[0.0],
                          std=[1.0], seed=0, train=True, drop_last="odd")
    assert len(loader) == _authors_steps(n, batch) == len(list(loader))


def test_longtail_preset_trains_the_authors_79_steps_at_ratio_10():
    cfg = compose_cfg(["experiment=paper_longtail", "dataset.imbalance_ratio=10"])
    n = sum(long_tail_counts(5000, 10, cfg.dataset.imbalance_ratio))
    assert n == 20_431 and cfg.dataset.drop_last == "odd"
    loader = DeviceLoader(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.zeros(n, dtype=torch.long),
                          batch_size=cfg.trainer.batch_size, device="cpu", mean=[0.0], std=[1.0], seed=0,
                          train=True, drop_last=cfg.dataset.drop_last)
    assert len(loader) == _authors_steps(n, cfg.trainer.batch_size) == 79


def _ldam_subset(labels: np.ndarray, counts: list[int]) -> set[int]:
    """kaidic/LDAM-DRW's IMBALANCECIFAR10 selection: np.random.seed(0), then per class in order a
    shuffle of the class's indices and its first n_k."""
    np.random.seed(0)
    keep = []
    for cls, n_k in zip(np.unique(labels), counts):
        idx = np.where(labels == cls)[0]
        np.random.shuffle(idx)
        keep.extend(idx[:n_k].tolist())
    return set(keep)


@pytest.mark.parametrize("ratio", [10, 100])
def test_longtail_preset_subset_is_the_ldam_reference_selection(tmp_path, ratio):
    written = write_cifar10(tmp_path / "cifar10", per_class_train=100)
    labels = written["train_y"]
    counts = [int(100 * (1 / ratio) ** (k / 9)) for k in range(10)]  # the reference's int() counts
    assert counts == long_tail_counts(100, 10, ratio)
    reference = sorted(_ldam_subset(labels, counts))
    expected = torch.from_numpy(written["train_x"][reference])
    for seed in (42, 7):  # the run seed does not move the subset
        cfg = compose_cfg(["experiment=paper_longtail", f"dataset.imbalance_ratio={ratio}", f"seed={seed}",
                           f"dataset.root={tmp_path / 'cifar10'}"])
        train, _ = instantiate(cfg.dataset).splits(seed)
        assert train.labels.tolist() == labels[reference].tolist()
        assert torch.equal(train.images, expected.permute(0, 3, 1, 2) if expected.shape[-1] == 3 else expected)
    by_seed = long_tail_indices(torch.as_tensor(labels), counts, seed=42)
    assert by_seed.tolist() != reference


def test_presets_set_the_authors_values_and_the_defaults_stay_out_of_the_signatures():
    for preset in ("paper_vit", "paper_cnn", "paper_ablation", "paper_longtail", "paper_imagenet1k", "paper_fig3"):
        d = compose_cfg([f"experiment={preset}"]).dataset
        assert (d.drop_last, d.eval_interpolation) == ("odd", "bilinear"), preset
    assert compose_cfg(["experiment=paper_longtail"]).dataset.selection == "ldam"
    for name in ("cifar10", "cifar10_lt", "digits", "imagenet100"):
        signed = signed_params(compose_cfg([f"dataset={name}"]))
        assert not {"dataset.eval_interpolation", "dataset.selection"} & set(signed), name


def test_fidelity_report_lists_every_choice_with_the_run_values(monkeypatch, capsys):
    """Every settled choice: the preset's value is the authors'; a run's params fill the last column,
    and a key the run predates shows the neutral value conf/config.yaml declares for it."""
    import yaml

    from analysis import fidelity, fidelity_choices

    params = {"dataset.drop_last": "False", "sched.lr_lag": "1"}
    monkeypatch.setattr(fidelity_choices, "run_params", lambda uri, run: params)
    monkeypatch.setattr(fidelity, "run_params", lambda uri, run: params)
    assert fidelity.main(["--skip-models", "--skip-recipe", "--run", "abc"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[1].strip("`"): line.split(" | ") for line in out.splitlines()
            if line.startswith("| ") and "`" in line.split(" | ")[1]}
    neutral = yaml.safe_load((CONF / "config.yaml").read_text())["signature"]["neutral"]
    assert len(rows) == len(fidelity_choices.CHOICES)
    for key, row in rows.items():
        authors, preset, equal, used = row[2], row[3], row[4], row[5]
        if authors == "not settled by the code":
            assert equal == "–" and row[6].strip(" |"), key  # the reason is given
            continue
        assert preset.endswith(f": {authors}") and equal == "yes", key
        want = params.get(key, f"{neutral[key]} (logged before the key)")
        assert used == want, key
