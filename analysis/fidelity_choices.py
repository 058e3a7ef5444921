"""The choices where the project's code and the authors' (or the community reference's) could differ,
each with the authors' value, the paper preset's value and, for a logged run, the value it used.

    python -m analysis.fidelity --skip-models --skip-recipe --run <run id> [--uri sqlite:///mlflow.db]

Values are config values as MLflow params hold them (strings). A run logged before a key existed
has no param for it: it ran the key's neutral value (``signature.neutral`` in conf/config.yaml).
The reasons and the sources are in docs/fidelity.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from dnrt.tracking_schema import TEST_AUC_AT_MIN_VAL_LOSS


@dataclass(frozen=True)
class Choice:
    item: str
    key: str
    authors: str | None  # None: the code does not settle it (see ``why``)
    preset: str  # the preset that should carry the authors' value
    overrides: tuple[str, ...] = ()
    why: str = ""


CHOICES = (
    Choice("ImageNet evaluation resize", "dataset.eval_interpolation", "bilinear", "paper_imagenet1k"),
    Choice("last partial batch", "dataset.drop_last", "odd", "paper_longtail",
           why="dropped when the train set or the batch is odd"),
    Choice("learning rate of step k", "sched.lr_lag", "1", "paper_vit", why="step k+1 trains at lr(k)"),
    Choice("ARR over taps of unequal widths", "trainer.arr_average", "width", "paper_cnn"),
    Choice("lr over several processes", "trainer.lr_scale", "device", "paper_vit",
           why="the same on one process"),
    Choice("ARR memory over several processes", "trainer.arr_memory", "rank", "paper_vit",
           why="the same on one process"),
    Choice("SyncBatchNorm over several GPUs", "trainer.sync_bn", "True", "paper_cnn",
           why="the same on one process"),
    Choice("ResNet-18 last BN of each block", "model.zero_init_last", "False", "paper_cnn", ("model=resnet18",)),
    Choice("CIFAR-10-LT images", "dataset.selection", "ldam", "paper_longtail",
           why="LDAM-DRW's draw (np.random.seed(0), per-class shuffle)"),
    Choice("DGraphFin number", "dataset.headline", TEST_AUC_AT_MIN_VAL_LOSS, "paper_graph",
           why="the baselines keep the epoch of lowest validation loss; their printed table comes from "
               "a logger module the repository does not contain"),
    Choice("ImageNet-1K Mixup/CutMix", "trainer.mixup_alpha", None, "paper_imagenet1k",
           why="the DNRT repository has none; QTClassification v0.4.0 mixes every ImageNet-1K batch "
               "(0.8 / 1.0 / smoothing 0.1: experiment=paper_imagenet1k_mixup); nothing says which made Table 3"),
    Choice("ResNet-32 initialisation", "model.name", None, "paper_longtail", ("model=resnet32",),
           why="the DNRT code has no ResNet-32; LDAM-DRW's initialises differently"),
)


def param(value) -> str:
    """A config value as an MLflow param string."""
    return str(value)


def preset_value(cfg: DictConfig, key: str) -> str:
    value = OmegaConf.select(cfg, key, default="(no key)")
    return param(value)


def choice_rows(compose, neutral: dict[str, str], params: dict[str, str] | None = None) -> list[list[str]]:
    """One row per choice: item, key, authors' value, preset (and its value), equal?, run's value.
    ``compose(preset, overrides)``: the composed preset; ``params``: a run's MLflow params."""
    rows = []
    for c in CHOICES:
        value = preset_value(compose(c.preset, list(c.overrides)), c.key)
        if c.authors is None:
            authors, same = "not settled by the code", "–"
        else:
            authors, same = c.authors, "yes" if value == c.authors else "**no**"
        if params is None:
            used = "–"
        elif c.key in params:
            used = params[c.key]
        else:
            used = f"{neutral.get(c.key, '?')} (logged before the key)"
        rows.append([c.item, f"`{c.key}`", authors, f"`{c.preset}`: {value}", same, used, c.why])
    return rows


def run_params(uri: str | None, run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(uri).get_run(run_id).data.params)


HEADER = ["Choice", "Key", "Authors' value", "Preset's value", "Equal", "The run's value", "Note"]
