"""Fidelity report: the paper models and the paper presets' recipe, beside the authors' figures.

    python -m analysis.fidelity [--models vit_tiny,resnet18] [--sizes 32,224] [--num-classes 100]
                                [--presets paper_vit,...] [--skip-models] [--skip-recipe] [--skip-choices]
                                [--run RUN_ID [--uri URI]] [--out report.md]

Models: every model is built by ``dnrt.models.create_model`` with its own activation (no RAA), so
the parameter count is the architecture's. MACs are ``dnrt.models.macs.count_macs``'s total for one
image: matmuls and convolutions, attention products included; elementwise ops are not counted.

Recipe: each preset is composed with Hydra as ``launch.py experiment=<preset>`` would; its optimizer
and schedule are built from the config (on a stand-in module for the lr, on the preset's first model
for the weight-decay coverage) and read at the first step of each listed epoch.

Choices: every place where the code could differ from the authors' (``analysis.fidelity_choices``),
with the authors' value, the preset's and, with ``--run``, the value that run used.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from dnrt.config import neutral_values
from dnrt.models import create_model
from dnrt.models.macs import count_macs

from .fidelity_choices import HEADER, choice_rows, run_params

CONF = Path(__file__).resolve().parents[1] / "conf"
PAPER_MODELS = ("vit_tiny", "deit_tiny", "cait_xxs", "pvt_tiny", "tnt_small",
                "alexnet", "vgg11", "resnet18", "mobilenet", "shufflenet")
# Parameter counts of the authors' model code at 32 px with 100 classes (their CIFAR-100 models).
AUTHORS_PARAMS = {"vit_tiny": 5_380_132, "deit_tiny": 5_399_816, "cait_xxs": 11_618_980,
                  "pvt_tiny": 12_767_588, "tnt_small": 21_559_948}
AUTHORS_PARAMS_PX = 32
PRESETS = ("paper_vit", "paper_cnn", "paper_ablation", "paper_longtail", "paper_imagenet1k")
LR_EPOCHS = (0, 20, 200, 280, 299)
CIFAR_TRAIN_IMAGES = 50_000  # steps per epoch for the lr read-out; epoch-start values do not depend on it


@dataclass
class ModelRow:
    model: str
    img_size: int
    params: int
    macs: int
    authors_params: int | None  # only at AUTHORS_PARAMS_PX


@dataclass
class RecipeRow:
    preset: str
    epochs: int
    batch_size: int
    lrs: dict[int, float]
    wd_tensors: float  # fraction of parameter tensors with weight decay > 0
    wd_elements: float  # fraction of parameter elements with weight decay > 0
    wd_model: str
    weight_decay: float
    eval_transform: str
    amp: str
    seed: int
    drop_path: dict[str, float]


def model_rows(models: list[str], sizes: list[int], num_classes: int = 100) -> list[ModelRow]:
    rows = []
    for name in models:
        for size in sizes:
            torch.manual_seed(0)
            model = create_model(name, num_classes=num_classes, img_size=size).model
            authors = AUTHORS_PARAMS.get(name) if size == AUTHORS_PARAMS_PX and num_classes == 100 else None
            macs = count_macs(model, size)["total"]
            rows.append(ModelRow(name, size, sum(p.numel() for p in model.parameters()), macs, authors))
    return rows


def compose_preset(preset: str, overrides: list[str] = ()) -> DictConfig:
    """``conf/config.yaml`` with ``experiment=<preset>``, as ``launch.py`` composes it (Hydra node kept)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={preset}", *overrides],
                       return_hydra_config=True)


def sweep_values(cfg: DictConfig, key: str) -> list[str]:
    """The values a preset sweeps ``key`` over (``hydra.sweeper.params``), else the composed one."""
    params = cfg.hydra.get("sweeper", {}).get("params") or {}
    if key in params:
        return [v.strip() for v in str(params[key]).split(",")]
    return [str(cfg[key].name)] if key == "model" else [str(cfg[key])]


def lr_at_epochs(cfg: DictConfig, epochs: tuple[int, ...] = LR_EPOCHS) -> dict[int, float]:
    """The lr of the first step of each epoch, with the optimizer and schedule built from ``cfg`` and
    driven as the training loop drives them (``step_update(step)`` after every optimizer step)."""
    steps = math.ceil(CIFAR_TRAIN_IMAGES / cfg.trainer.batch_size)
    optimizer = instantiate(cfg.optim, model_or_params=nn.Linear(2, 2))
    scheduler, _ = instantiate(cfg.sched, optimizer=optimizer, num_epochs=cfg.trainer.epochs,
                               updates_per_epoch=steps, step_on_epochs=False)
    out = {}
    for epoch in epochs:
        if epoch >= cfg.trainer.epochs:
            continue
        if epoch:
            scheduler.step_update(num_updates=epoch * steps)
        out[epoch] = optimizer.param_groups[0]["lr"]
    return out


def wd_coverage(optimizer: torch.optim.Optimizer) -> tuple[float, float]:
    """Fractions of parameter tensors and of parameter elements whose group has weight decay > 0."""
    tensors = elements = wd_tensors = wd_elements = 0
    for group in optimizer.param_groups:
        decayed = group.get("weight_decay", 0.0) > 0
        for p in group["params"]:
            tensors, elements = tensors + 1, elements + p.numel()
            if decayed:
                wd_tensors, wd_elements = wd_tensors + 1, wd_elements + p.numel()
    return wd_tensors / max(tensors, 1), wd_elements / max(elements, 1)


def eval_transform(dataset: DictConfig) -> str:
    size = int(dataset.get("img_size", 32))
    crop = dataset.get("crop_pct")
    text = f"resize {math.floor(size / crop)} + center crop {size}" if crop else f"full {size}-px image"
    return f"{text}, {dataset.get('normalization', 'standard')} normalization"


def recipe_row(preset: str) -> RecipeRow:
    cfg = compose_preset(preset)
    models = sweep_values(cfg, "model")
    drop_path = {m: float(compose_preset(preset, [f"model={m}"]).model.drop_path) for m in models}
    size = int(cfg.dataset.get("img_size", 32))
    first = create_model(models[0], num_classes=10, img_size=size).model
    wd_t, wd_e = wd_coverage(instantiate(cfg.optim, model_or_params=first))
    return RecipeRow(preset, int(cfg.trainer.epochs), int(cfg.trainer.batch_size), lr_at_epochs(cfg), wd_t, wd_e,
                     models[0], float(cfg.optim.weight_decay), eval_transform(cfg.dataset), str(cfg.trainer.amp),
                     int(cfg.seed), drop_path)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def models_markdown(rows: list[ModelRow], num_classes: int) -> list[str]:
    body = []
    for r in rows:
        if r.authors_params is None:
            authors, delta = "–", "–"
        else:
            authors, delta = f"{r.authors_params:,}", f"{r.params - r.authors_params:+,}"
        body.append([f"`{r.model}`", str(r.img_size), f"{r.params:,}", f"{r.macs / 1e9:.4f}", authors, delta])
    return [f"Models ({num_classes} classes, the model's own activation; GMACs = FlopCounterMode FLOPs / 2, "
            "one image):", "", *_table(["Model", "px", "Params", "GMACs", "Authors' params", "Δ"], body)]


def recipe_markdown(rows: list[RecipeRow]) -> list[str]:
    body = []
    for r in rows:
        lrs = " / ".join(f"{r.lrs[e]:.3g}" if e in r.lrs else "–" for e in LR_EPOCHS)
        dp = ", ".join(f"{m} {v:g}" for m, v in r.drop_path.items())
        body.append([f"`{r.preset}`", str(r.epochs), str(r.batch_size), lrs,
                     f"{r.weight_decay:g} on {r.wd_tensors:.0%} of tensors, {r.wd_elements:.0%} of weights "
                     f"({r.wd_model})", r.eval_transform, r.amp, str(r.seed), dp])
    epochs = "/".join(str(e) for e in LR_EPOCHS)
    return ["Recipe of each preset (lr at the first step of epochs " + epochs + "):", "",
            *_table(["Preset", "Epochs", "Batch", f"lr @ {epochs}", "Weight decay", "Eval transform", "AMP",
                     "Seed", "Drop path"], body)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PAPER_MODELS), help="comma-separated model names")
    parser.add_argument("--sizes", default="32,224", help="comma-separated input sizes in px")
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated experiment presets")
    parser.add_argument("--skip-models", action="store_true", help="only the recipe table")
    parser.add_argument("--skip-recipe", action="store_true", help="only the models table")
    parser.add_argument("--skip-choices", action="store_true", help="no table of choices against the authors'")
    parser.add_argument("--run", default=None, help="an MLflow run id: show the value it used for each choice")
    parser.add_argument("--uri", default=None, help="MLflow tracking URI of --run (default: MLflow's own)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (Markdown) here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    lines: list[str] = []
    if not args.skip_models:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        models = [m for m in args.models.split(",") if m]
        lines += models_markdown(model_rows(models, sizes, args.num_classes), args.num_classes) + [""]
    if not args.skip_recipe:
        lines += recipe_markdown([recipe_row(p) for p in args.presets.split(",") if p]) + [""]
    if not args.skip_choices:
        params = run_params(args.uri, args.run) if args.run else None
        rows = choice_rows(lambda preset, extra: compose_preset(preset, extra),
                           neutral_values(compose_preset("paper_vit")), params)
        lines += ["Choices against the authors' code (docs/fidelity.md)"
                  + (f", and run {args.run}" if args.run else "") + ":", "", *_table(HEADER, rows), ""]
    lines.append(f"({time.perf_counter() - start:.0f} s, torch {torch.__version__})")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
