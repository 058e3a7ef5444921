"""Model registry: ``create_model(name, ...)`` builds a network by name, adapts it to the input
size, swaps in the chosen activation and knows where ARR taps it.

Registered names are DNRT's paper models adapted for small inputs and the graph models of
:mod:`dnrt.graph` (registered for the ``node`` task, built by their own config target); any other name is
passed to ``timm.create_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import timm
import torch
from torch import nn

from ..nn import SurgeryReport, swap_activations


@dataclass
class ModelSpec:
    """How to build one registered model and where ARR taps it."""

    build: Callable[..., nn.Module]
    taps: list[str] = field(default_factory=list)
    pooling: str = "auto"
    family: str = "cnn"
    note: str = ""
    # Stem choices beyond the default "cifar" (the build then takes ``stem=``) and their taps where they differ.
    stems: tuple[str, ...] = ("cifar",)
    stem_taps: dict[str, list[str]] = field(default_factory=dict)
    # The task its inputs come from (dnrt.factory.tasks): "image" or, for GNNs, "node".
    task: str = "image"

    def taps_for(self, stem: str = "cifar") -> list[str]:
        return self.stem_taps.get(stem, self.taps)


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, taps: list[str], pooling: str = "auto", family: str = "cnn", note: str = "",
                   stem_taps: dict[str, list[str]] | None = None, task: str = "image"):
    """Decorator: register ``build(num_classes, img_size, in_chans, drop_path) -> nn.Module`` (an image
    model; a model of another ``task`` registers its own build, taking the inputs its task provides).

    ``stem_taps``: stem name -> taps for models with a ``stem`` choice beyond ``"cifar"``; their
    build also takes ``stem=``."""

    def wrap(build):
        extra = dict(stem_taps or {})
        _MODELS[name] = ModelSpec(build, list(taps), pooling, family, note, stems=("cifar", *extra),
                                  stem_taps={k: list(v) for k, v in extra.items()}, task=task)
        return build

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_spec(name: str) -> ModelSpec | None:
    return _MODELS.get(name)


def patch_size_for(img_size: int) -> int:
    """16 at ImageNet sizes, an 8x8 token grid at 32-64 px (4 at 32 px), 4x4 below (2 at 8 px)."""
    if img_size >= 128:
        return 16
    return max(1, img_size // 8) if img_size >= 32 else max(1, img_size // 4)


def default_taps(model: nn.Module) -> tuple[list[str], str]:
    names = {n for n, _ in model.named_children()}
    if "blocks" in names:
        return ["blocks.*"], ("cls" if getattr(model, "cls_token", None) is not None else "mean_tokens")
    if "stages" in names:
        return ["stages.*"], "auto"
    if "layer1" in names:
        return ["layer*.*"], "avg2d"
    raise ValueError(f"no default ARR taps for {type(model).__name__}; set regularizer.taps explicitly")


def _build_timm(name: str, num_classes: int, img_size: int, in_chans: int, drop_path: float) -> nn.Module:
    if name not in timm.list_models():
        raise KeyError(f"Unknown model {name!r}. Registered: {', '.join(list_models())}; "
                       "or any timm.list_models() name")
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, pretrained=False)
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    try:
        return timm.create_model(name, img_size=img_size, **kwargs)
    except TypeError:  # CNNs take any input size and have no img_size argument
        return timm.create_model(name, **kwargs)


# Models whose build takes ``zero_init_last`` (where timm's definition and the authors' differ).
ZERO_INIT_LAST = ("resnet18",)


@dataclass
class BuiltModel:
    """A model with its activation swapped, plus what ARR needs to tap it."""

    model: nn.Module
    taps: list[str]
    pooling: str
    surgery: SurgeryReport | None


def create_model(name: str, num_classes: int, img_size: int = 32, in_chans: int = 3, act: str = "",
                 drop_path: float = 0.0, act_include: str = "*", stem: str = "cifar",
                 zero_init_last: bool | None = None) -> BuiltModel:
    """Build ``name`` for ``img_size`` inputs with every activation replaced by ``act``
    (``""`` keeps the model's own). Returns the model and its default ARR taps.

    ``stem``: ``"cifar"`` (the small-input adaptation below 64 px) or, for the CNNs that offer it,
    ``"imagenet"`` (torchvision's definition at every size). ``zero_init_last`` (ResNet-18 only):
    zero each block's last BatchNorm; None keeps the definition's default. Unknown keyword
    arguments raise ``TypeError`` naming them."""
    spec = _MODELS.get(name)
    if spec is not None and spec.task != "image":
        raise ValueError(f"model {name!r} is for {spec.task} data, not images: its config's _target_ builds it")
    stems = spec.stems if spec is not None else ("cifar",)
    if stem not in stems:
        raise ValueError(f"model.stem={stem!r} is not available for model {name!r}; valid: {', '.join(stems)}")
    if spec is not None and spec.family == "vit" and img_size % patch_size_for(img_size):
        raise ValueError(f"{name} splits {img_size}-px inputs into {patch_size_for(img_size)}-px patches, "
                         "which must divide the image size")
    if zero_init_last is not None and name not in ZERO_INIT_LAST:
        raise ValueError(f"model.zero_init_last applies to {', '.join(ZERO_INIT_LAST)} only; null for {name!r}")
    if spec is not None:
        extra = {"stem": stem} if len(spec.stems) > 1 else {}
        if zero_init_last is not None:
            extra["zero_init_last"] = zero_init_last
        model = spec.build(num_classes=num_classes, img_size=img_size, in_chans=in_chans, drop_path=drop_path,
                           **extra)
        taps, pooling = spec.taps_for(stem), spec.pooling
    else:
        model = _build_timm(name, num_classes, img_size, in_chans, drop_path)
        taps, pooling = default_taps(model)
    report = None
    if act:
        sample = torch.zeros(2, in_chans, img_size, img_size)
        report = swap_activations(model, act, sample, include=act_include)
    return BuiltModel(model, taps, pooling, report)
