"""Model registry: paper models by name, any timm model otherwise."""

from . import cnns, vits  # noqa: F401  (register the paper's models)
from . import resnet_cifar  # noqa: F401  (registers resnet32, the long-tail backbone)
from .registry import BuiltModel, create_model, default_taps, list_models, model_spec, patch_size_for, register_model

__all__ = [
    "BuiltModel", "create_model", "default_taps", "list_models", "model_spec", "patch_size_for", "register_model",
]
