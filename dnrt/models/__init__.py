"""Model registry: paper models by name, any timm model otherwise."""

from . import cnns, resnet_cifar, vits  # noqa: F401  (register the paper's models; resnet32 for Table 5)
from .registry import BuiltModel, create_model, default_taps, list_models, model_spec, patch_size_for, register_model

__all__ = [
    "BuiltModel", "create_model", "default_taps", "list_models", "model_spec", "patch_size_for", "register_model",
]
