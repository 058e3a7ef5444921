"""The paper's Figures 2 and 3 (``python -m analysis.paper_figures``) and the ``flip`` augmentation.

A small real sweep (digits, ViT-Tiny, GELU and RAA x without and with ARR, flip-only augmentation,
2 epochs at a tenth of the data, checkpoints logged) is trained once for this module. The expected
values are computed here independently: MLP activations through a plain forward hook on the
reloaded model's own ``blocks[i].mlp.act``, the curves straight from ``MlflowClient.get_metric_history``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from omegaconf import OmegaConf
from PIL import Image

from analysis import paper_figures
from analysis.mlp_responses import MlpActTaps
from analysis.responses import collect
from analysis.runs import AnalysisError
from dnrt.data import DigitsData, array_transform, device_transform, folder_transform
from dnrt.engine.checkpoint import load_checkpoint
from dnrt.engine.distributed import DistInfo
from dnrt.factory import build_components
from dnrt.preflight import check_run
from dnrt.testing import generate_sweep_store
from tests.harness.config import compose_cfg
from tests.harness.hooks import module_fixture
from tests.harness.store import Store, migrated_store

EXPERIMENT = "paper-figures"
SWEEP = ["-m", "model=vit_tiny", "act=gelu,raa", "regularizer=none,arr", "dataset.augment=flip",
         "trainer.epochs=2", "dataset.fraction=0.1", "trainer.batch_size=32", "trainer.progress=false",
         "trainer.threads=1", "trainer.log_checkpoint=true"]
LAYERS = (1, 4, 10)
PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"


@module_fixture
def fig_store(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Store:
    store = migrated_store(tmp_path_factory.mktemp("paper_figures"), migrated_db, EXPERIMENT)
    store.launch(*SWEEP, *store.overrides(), f"hydra.sweep.dir={store.root / 'multirun'}", check=True)
    return store


def run_of(store: Store, act: str, reg: str):
    hits = [r for r in store.runs(EXPERIMENT)
            if (r.data.params["act.name"], r.data.params["regularizer.name"]) == (act, reg)]
    assert len(hits) == 1, [r.info.run_name for r in store.runs(EXPERIMENT)]
    return hits[0]


def cli(store: Store, figure: str, out: Path, *extra: str) -> int:
    return paper_figures.main([figure, "--tracking-uri", store.uri, "--experiment", EXPERIMENT, "--out", str(out),
                               *extra])


_REFERENCE: dict[str, tuple] = {}  # run id -> reference_forward's result (the runs do not change)


def reference_forward(store: Store, run) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """Reload ``run`` by hand and hook ``blocks[k-1].mlp.act`` (class token) and ``blocks[-1]`` (its class
    token: ARR's last tap) over the whole validation split: ({layer: [N, hidden]}, [N, d], labels [N])."""
    if run.info.run_id not in _REFERENCE:
        _REFERENCE[run.info.run_id] = _forward(store, run)
    return _REFERENCE[run.info.run_id]


def _forward(store: Store, run) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    client = store.client
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = load_checkpoint(client.download_artifacts(run.info.run_id, "checkpoints/last.pt", tmp))
        cfg = OmegaConf.create(Path(client.download_artifacts(run.info.run_id, "config.yaml", tmp)).read_text())
    cfg.trainer.device, cfg.trainer.compile, cfg.trainer.workers = "cpu", False, 0
    comp = build_components(check_run(cfg, fit=False), DistInfo())
    model = comp.core.eval()
    model.load_state_dict(ckpt["model"])
    mlp: dict[int, list] = {k: [] for k in LAYERS}
    last: list = []
    handles = [model.blocks[k - 1].mlp.act.register_forward_hook(lambda m, a, out, k=k: mlp[k].append(out[:, 0]))
               for k in LAYERS]
    handles.append(model.blocks[-1].register_forward_hook(lambda m, a, out: last.append(out[:, 0])))
    labels = []
    with torch.no_grad():
        for x, y in comp.val_loader:
            model(x)
            labels.append(y)
    for h in handles:
        h.remove()
    return ({k: torch.cat(v).numpy() for k, v in mlp.items()}, torch.cat(last).numpy(), torch.cat(labels).numpy())


# ------------------------------------------------------------------------------------------- Figure 2

@pytest.mark.slow
def test_collected_mlp_responses_equal_a_plain_hook(fig_store: Store) -> None:
    run = run_of(fig_store, "raa", "none")
    got = collect(fig_store.client, run.info.run_id, batches=100, mlp_layers=LAYERS)
    ref, _, labels = reference_forward(fig_store, run)
    assert got.pooling == "cls" and got.mlp_paths == {k: f"blocks.{k - 1}.mlp.act" for k in LAYERS}
    np.testing.assert_array_equal(got.labels, labels)
    for k in LAYERS:
        assert got.mlp[k].shape == ref[k].shape == (len(labels), 768)  # vit_tiny: 4 x 192 hidden units
        np.testing.assert_allclose(got.mlp[k], ref[k], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_fig2_files_hold_the_hooked_values(fig_store: Store, tmp_path: Path) -> None:
    assert cli(fig_store, "fig2", tmp_path, "--batches", "100") == 0
    for stem in ("fig2a", "fig2b"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == PNG_MAGIC
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:4] == PDF_MAGIC
    data = np.load(tmp_path / "fig2.npz")
    # (a): GELU without ARR beside RAA without ARR; first 50 channels of each layer
    for name, run in (("without", run_of(fig_store, "gelu", "none")), ("with", run_of(fig_store, "raa", "none"))):
        ref, _, _ = reference_forward(fig_store, run)
        for k in LAYERS:
            np.testing.assert_allclose(data[f"a_layer{k}_{name}"], ref[k][:, :50], rtol=0, atol=1e-6)
    # (b): GELU without ARR beside GELU with ARR; digits has no class names: the first three classes
    for name, run in (("without", run_of(fig_store, "gelu", "none")), ("with", run_of(fig_store, "gelu", "arr"))):
        _, last, labels = reference_forward(fig_store, run)
        for k in (0, 1, 2):
            np.testing.assert_allclose(data[f"b_class{k}_{name}"], last[labels == k][:, :50], rtol=0, atol=1e-5)
    assert sorted(data.files) == sorted([f"a_layer{k}_{n}" for k in LAYERS for n in ("without", "with")]
                                        + [f"b_class{k}_{n}" for k in (0, 1, 2) for n in ("without", "with")])


@pytest.mark.slow
def test_fig2_classes_are_a_parameter(fig_store: Store, tmp_path: Path) -> None:
    assert cli(fig_store, "fig2", tmp_path, "--parts", "b", "--classes", "3,7", "--channels", "5") == 0
    data = np.load(tmp_path / "fig2.npz")
    assert sorted(data.files) == ["b_class3_with", "b_class3_without", "b_class7_with", "b_class7_without"]
    assert data["b_class3_with"].shape[1] == 5
    assert paper_figures.default_classes("cifar10") == (0, 2, 5)
    assert [paper_figures.class_names("cifar10")(k) for k in (0, 2, 5)] == ["airplane", "bird", "dog"]
    assert paper_figures.default_classes("digits") == (0, 1, 2)


@pytest.mark.slow
def test_a_layer_the_model_lacks_names_the_valid_range(fig_store: Store, tmp_path: Path, capsys) -> None:
    two = timm.models.vision_transformer.VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=10,
                                                           embed_dim=16, depth=2, num_heads=2)
    with pytest.raises(AnalysisError, match=r"layer 4, 10 does not exist in vit-2.*valid layers: 1-2"):
        MlpActTaps(two, [1, 4, 10], "cls", "vit-2")
    taps = MlpActTaps(two, [2], "cls", "vit-2")  # layer 2 is the last block, 1-based
    assert taps.paths == {2: "blocks.1.mlp.act"}
    taps.remove()
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    with pytest.raises(AnalysisError, match="no transformer MLP activation"):
        MlpActTaps(cnn, [1], "cls", "cnn")
    assert cli(fig_store, "fig2", tmp_path, "--parts", "a", "--layers", "1,13") == 2
    assert "layer 13 does not exist in vit_tiny" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- Figure 3

@pytest.mark.slow
def test_fig3_plots_the_metric_history(fig_store: Store, tmp_path: Path, monkeypatch) -> None:
    drawn = {}
    real_save = paper_figures.save

    def spy(fig, out, stem, formats):
        drawn.update({line.get_gid(): (list(line.get_xdata()), list(line.get_ydata()))
                      for ax in fig.axes for line in ax.get_lines()})
        return real_save(fig, out, stem, formats)

    monkeypatch.setattr(paper_figures, "save", spy)
    assert cli(fig_store, "fig3", tmp_path) == 0
    assert (tmp_path / "fig3.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "fig3.pdf").read_bytes()[:4] == PDF_MAGIC
    csv = pd.read_csv(tmp_path / "fig3.csv")
    runs = [run_of(fig_store, "gelu", "none"), run_of(fig_store, "gelu", "arr")]
    assert len(drawn) == 6  # two runs x (train CE, test CE, test top-1)
    for run in runs:
        for key in ("train/loss_ce", "val/loss", "val/acc1"):
            hist = sorted(fig_store.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            assert [m.step for m in hist] == [1, 2]
            assert drawn[f"{run.info.run_id}|{key}"] == ([m.step for m in hist], [m.value for m in hist])
            rows = csv[(csv["run_id"] == run.info.run_id) & (csv["key"] == key)].sort_values("step")
            assert rows["value"].tolist() == [m.value for m in hist]


def test_missing_runs_name_what_is_missing(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cells = [{"model.name": "vit_tiny", "act.name": "gelu", "regularizer.name": "none", "dataset.name": "digits"}]
    generate_sweep_store(uri, "lonely", cells, [0])
    base = ["--tracking-uri", uri, "--experiment", "lonely", "--out", str(tmp_path / "out")]
    assert paper_figures.main(["fig3", *base]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "(none and arr)" in err and "regularizers: none" in err and "experiment=paper_fig3" in err
    assert paper_figures.main(["fig2", *base]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "pair for Figure 2a" in err and "pair for Figure 2b" in err
    assert not (tmp_path / "out").exists()


def test_paper_fig3_preset() -> None:
    cfg = compose_cfg(["experiment=paper_fig3"], return_hydra_config=True)
    assert (cfg.model.name, cfg.act.name, cfg.dataset.name, cfg.dataset.augment, cfg.seed) == \
        ("vit_tiny", "gelu", "cifar10", "flip", 42)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.model.drop_path) == (300, 256, 0.1)
    assert cfg.hydra.sweeper.params == {"regularizer": "none,arr"}
    assert compose_cfg(["experiment=paper_fig3", "regularizer=arr"]).regularizer.weight == 10.0


# ------------------------------------------------------------------------------ flip-only augmentation

def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """The reference: uint8 [..., C, H, W] -> (x / 255 - mean) / std, as ToTensor + Normalize."""
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return (x.float() / 255 - m) / s


def _flipped(out: torch.Tensor, x: torch.Tensor, mean, std) -> torch.Tensor:
    """Per image: True where ``out`` is the mirrored image, False where it is the image; an output that
    is neither (a crop, a shift, a resize) fails."""
    plain, mirror = _normalise(x, mean, std), _normalise(x.flip(-1), mean, std)
    same = (out - plain).flatten(1).abs().amax(1) < 1e-6
    mirrored = (out - mirror).flatten(1).abs().amax(1) < 1e-6
    assert bool((same | mirrored).all()), "an output is neither the image nor its mirror"
    return mirrored & ~same


def test_flip_on_the_device_is_a_mirror_half_the_time() -> None:
    x = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    kw = dict(augment="flip", size=8, mean=torch.tensor(mean).view(1, -1, 1, 1),
              std=torch.tensor(std).view(1, -1, 1, 1))
    out = device_transform(x, gen=torch.Generator().manual_seed(0), **kw)
    flips = _flipped(out, x, mean, std)
    assert 160 <= int(flips.sum()) <= 240  # p=0.5: 200 ± 4 sd
    again = device_transform(x, gen=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(out, again)  # the seed fixes the draws


def test_flip_on_the_pil_paths_is_a_mirror_half_the_time() -> None:
    torch.manual_seed(0)  # torchvision's RandomHorizontalFlip draws from torch's global generator
    x = torch.randint(0, 256, (200, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    tf = array_transform("flip", train=True, native_size=8, size=8, mean=mean, std=std)
    out = torch.stack([tf(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in x])
    assert 70 <= int(_flipped(out, x, mean, std).sum()) <= 130
    evaluation = array_transform("flip", train=False, native_size=8, size=8, mean=mean, std=std)
    assert int(_flipped(torch.stack([evaluation(Image.fromarray(i.permute(1, 2, 0).numpy())) for i in x]),
                        x, mean, std).sum()) == 0  # validation is never flipped
    photo = Image.fromarray(x[0].repeat(1, 5, 6).permute(1, 2, 0).numpy())  # 40 x 48
    folder = folder_transform("flip", train=True, size=32, mean=mean, std=std)
    plain = folder_transform("none", train=False, size=32, mean=mean, std=std)(photo)
    outs = [folder(photo) for _ in range(60)]
    assert all(torch.equal(o, plain) or torch.equal(o, plain.flip(-1)) for o in outs)
    assert 15 <= sum(torch.equal(o, plain.flip(-1)) for o in outs) <= 45


@pytest.mark.parametrize("device_resident", [True, False])
def test_flip_dataset_batches_are_the_plain_batches_or_their_mirrors(device_resident: bool) -> None:
    common = dict(fraction=0.3, device_resident=device_resident)
    plain, _ = DigitsData(augment="none", **common).loaders(batch_size=64, seed=0, device="cpu")
    flip, _ = DigitsData(augment="flip", **common).loaders(batch_size=64, seed=0, device="cpu")
    n_flipped = n = 0
    for (xa, ya), (xb, yb) in zip(plain, flip):
        assert torch.equal(ya, yb)
        mirrored = (xb - xa.flip(-1)).flatten(1).abs().amax(1) < 1e-6
        same = (xb - xa).flatten(1).abs().amax(1) < 1e-6
        assert bool((same | mirrored).all())
        n_flipped += int((mirrored & ~same).sum())
        n += len(ya)
    assert 0.3 * n <= n_flipped <= 0.7 * n
