"""One registry of activations keyed by name: the paper's baselines and the RAA family.

Every entry is a factory ``(num_features, channel_dim) -> nn.Module``; baselines ignore both.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .raa import RAA

ActFactory = Callable[[int, int], nn.Module]

_REGISTRY: dict[str, ActFactory] = {}
_NEEDS_SHAPE: set[str] = set()


def register_act(name: str, factory: ActFactory, needs_shape: bool = False) -> None:
    """Add ``name`` to the registry; ``needs_shape`` marks activations with per-site parameters."""
    _REGISTRY[name] = factory
    if needs_shape:
        _NEEDS_SHAPE.add(name)


def _baseline(cls: type[nn.Module], **kwargs) -> ActFactory:
    return lambda num_features=0, channel_dim=-1: cls(**kwargs)


for _name, _cls, _kw in [
    ("relu", nn.ReLU, {}),
    ("gelu", nn.GELU, {}),
    ("silu", nn.SiLU, {}),
    ("elu", nn.ELU, {}),
    ("selu", nn.SELU, {}),
    ("softplus", nn.Softplus, {}),
]:
    register_act(_name, _baseline(_cls, **_kw))

for _base in ("gelu", "relu"):
    for _variant in ("token", "simple", "elementwise"):
        _key = f"raa_{_base}" if _variant == "token" else f"raa_{_base}_{_variant}"
        register_act(_key, partial(lambda nf, cd, b, v: RAA(nf, base=b, channel_dim=cd, variant=v),
                                   b=_base, v=_variant), needs_shape=True)
register_act("raa", _REGISTRY["raa_gelu"], needs_shape=True)


def list_acts() -> list[str]:
    return sorted(_REGISTRY)


def act_needs_shape(name: str) -> bool:
    """True when the activation has per-site parameters sized by the feature dimension (RAA)."""
    _check_name(name)
    return name in _NEEDS_SHAPE


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise KeyError(f"Unknown activation {name!r}. Valid names: {', '.join(list_acts())}")


def create_act(name: str, num_features: int = 0, channel_dim: int = -1) -> nn.Module:
    """Build activation ``name``; ``num_features``/``channel_dim`` size RAA (ignored by baselines)."""
    _check_name(name)
    return _REGISTRY[name](num_features, channel_dim)
