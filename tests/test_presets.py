"""Paper presets: the authors' recipe, the right cells, and a one-epoch smoke sweep."""

import itertools

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import dnrt  # noqa: F401  (registers the resolvers the presets use)
from dnrt.testing import write_cifar10
from tests.harness.config import compose_cfg

PRESETS = ["paper_vit", "paper_cnn", "paper_imagenet1k", "paper_ablation", "paper_longtail"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_carries_the_authors_recipe(preset):
    cfg = compose_cfg([f"experiment={preset}"], return_hydra_config=True)
    assert cfg.trainer.epochs == 300 and cfg.trainer.batch_size == 256 and cfg.trainer.grad_clip == 1.0
    assert cfg.optim.opt == "adamw" and cfg.optim.lr == pytest.approx(5e-4 * 256 / 512)
    assert cfg.optim.weight_decay == 0.05
    assert cfg.sched.warmup_epochs == 20 and cfg.sched.warmup_lr == 1e-6 and cfg.sched.min_lr == 1e-5
    assert cfg.dataset.augment == "paper"
    # stochastic depth by model, the same rule in every preset: 0.1 for the ViTs, none for the CNNs
    for model, rate in (("vit_tiny", 0.1), ("tnt_small", 0.1), ("resnet18", 0.0), ("resnet32", 0.0)):
        assert compose_cfg([f"experiment={preset}", f"model={model}"]).model.drop_path == rate, model


@pytest.mark.parametrize("dataset,weight", [("cifar10", 10.0), ("cifar100", 20.0)])
def test_dnrt_cells_use_the_authors_arr_weight(dataset, weight):
    cfg = compose_cfg(["experiment=paper_vit", f"dataset={dataset}", "mechanism=dnrt"])
    assert (cfg.act.name, cfg.regularizer.name) == ("raa", "arr")
    assert cfg.regularizer.weight == weight and cfg.regularizer.momentum == 0.1
    base = compose_cfg(["experiment=paper_vit", f"dataset={dataset}", "mechanism=silu"])
    assert (base.act.name, base.regularizer.name) == ("silu", "none")


@pytest.mark.slow
def test_paper_vit_smoke_sweep(store, tmp_path):
    """`experiment=paper_vit trainer.epochs=1 dataset.fraction=0.01` on CIFAR-format files written here:
    every ViT of Table 1 in the DNRT column, on CIFAR-10 with the paper recipe (the models with their own
    activations: tests/test_models_paper.py). With trainer.amp=false, as conf/trainer/paper.yaml says for
    CPU runs: fp16 autocast is far slower than float32 on the CPU (docs/measurements.md); the fp16 path has
    its own tests (tests/test_recipe.py)."""
    write_cifar10(tmp_path / "data" / "cifar10", per_class_train=20, per_class_test=4)
    env_args = [f"data_dir={tmp_path / 'data'}", "trainer.progress=false", "trainer.threads=1", "trainer.amp=false"]
    proc = store.launch("experiment=paper_vit", "trainer.epochs=1", "dataset.fraction=0.01",
                             "dataset=cifar10", "mechanism=dnrt",
                             "tracking.experiment=test", *env_args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = store.runs()
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    cells = {(r.data.params["model.name"], r.data.params["act.name"], r.data.params["regularizer.name"]) for r in runs}
    models = ["vit_tiny", "deit_tiny", "cait_xxs", "pvt_tiny", "tnt_small"]
    assert cells == {(m, "raa", "arr") for m in models}
    assert {r.data.params["regularizer.weight"] for r in runs if r.data.params["regularizer.name"] == "arr"} == {"10.0"}


def sweep_axes(preset: str) -> list[list[str]]:
    """The preset's ``hydra.sweeper.params`` expanded by Hydra's own override parser, one list of
    ``key=value`` overrides per swept key."""
    params = compose_cfg([f"experiment={preset}"], return_hydra_config=True).hydra.sweeper.params
    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        (override,) = parser.parse_overrides([f"{key}={value}"])
        axes.append([f"{key}={v}" for v in override.sweep_string_iterator()])
    return axes


@pytest.mark.parametrize("preset", PRESETS)
def test_every_swept_value_composes_and_resolves(preset):
    """Each value of each swept key, the other keys at their first value (the full grids are
    products of these)."""
    axes = sweep_axes(preset)
    for i, axis in enumerate(axes):
        for value in axis:
            cell = [value if j == i else other[0] for j, other in enumerate(axes)]
            cfg = compose_cfg([f"experiment={preset}", *cell])
            OmegaConf.to_container(cfg, resolve=True)
            key, _, expected = value.partition("=")
            if key in ("model", "dataset"):
                assert cfg[key].name == expected, cell


# The paper's column order, GDN before DNRT (Tables 1 and 2).
PAPER_MECHANISMS = ["softplus", "elu", "selu", "silu", "relu", "gelu", "gdn", "dnrt"]


@pytest.mark.parametrize("preset", ["paper_vit", "paper_cnn"])
def test_vit_and_cnn_tables_have_the_gdn_column(preset):
    axes = {a[0].split("=", 1)[0]: [v.split("=", 1)[1] for v in a] for a in sweep_axes(preset)}
    assert axes["mechanism"] == PAPER_MECHANISMS
    cfg = compose_cfg([f"experiment={preset}", "mechanism=gdn"])
    assert (cfg.act.name, cfg.regularizer.name) == ("gdn", "none")


# The paper's columns (mechanism=...) as (act, regularizer).
MECHANISMS = {"relu": ("relu", "none"), "gelu": ("gelu", "none"), "dnrt": ("raa", "arr")}


def composed_cells(preset: str) -> list[tuple[dict[str, str], object]]:
    """Every cell of ``preset``'s sweep as (its swept ``key: value``s, the composed config)."""
    cells = []
    for cell in itertools.product(*sweep_axes(preset)):
        cells.append((dict(c.split("=", 1) for c in cell), compose_cfg([f"experiment={preset}", *cell])))
    return cells


def test_paper_longtail_is_table_5_right():
    """{ViT-Tiny, ResNet-32} x {ReLU, GELU, DNRT} x imbalance {10, 50, 100}: every cell composes
    to the right model, activation, regulariser and ratio on CIFAR-10-LT."""
    cells = composed_cells("paper_longtail")
    assert len(cells) == 18
    seen = set()
    for values, cfg in cells:
        assert cfg.dataset.name == "cifar10_lt"
        assert cfg.dataset.imbalance_ratio == int(values["dataset.imbalance_ratio"])
        assert (cfg.act.name, cfg.regularizer.name) == MECHANISMS[values["mechanism"]]
        assert cfg.model.name == values["model"]
        seen.add((cfg.model.name, values["mechanism"], cfg.dataset.imbalance_ratio))
    assert seen == set(itertools.product(["vit_tiny", "resnet32"], ["relu", "gelu", "dnrt"], [10, 50, 100]))
