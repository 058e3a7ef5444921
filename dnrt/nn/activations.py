"""One registry of activations keyed by name: the paper's baselines and the RAA family.

Every entry is a factory ``(num_features, channel_dim) -> nn.Module``; baselines ignore both.
:class:`ActSpec` is what the ``act`` config group describes: a registry name plus, for RAA, the
``base`` and ``variant`` keys, each of which changes the module that is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from ..config import ConfigError
from .gdn import GDN
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
register_act("gdn", lambda nf, cd: GDN(nf, channel_dim=cd), needs_shape=True)


RAA_BASES = ("gelu", "relu")
RAA_VARIANTS = ("token", "simple", "elementwise")
# RAA names whose base and variant are part of the name; plain "raa" takes both from its keys.
_RAA_FIXED = {(f"raa_{b}" if v == "token" else f"raa_{b}_{v}"): (b, v) for b in RAA_BASES for v in RAA_VARIANTS}


@dataclass(frozen=True)
class ActSpec:
    """An activation as the ``act`` group describes it: ``ActSpec(**cfg.act)``.

    ``name`` is a registry name. ``base`` (gelu | relu) and ``variant`` (token | simple | elementwise)
    apply to RAA only: ``raa`` takes them from these keys (default gelu, token); names like
    ``raa_relu_simple`` fix them, and a key that contradicts the name is an error. An unknown key is a
    ``TypeError`` naming it, as for any dataclass.
    """

    name: str
    base: str | None = None
    variant: str | None = None

    def __post_init__(self) -> None:
        if self.name not in _REGISTRY:
            raise ConfigError("act.name", self.name, "unknown activation", list_acts())
        if self.name != "raa" and self.name not in _RAA_FIXED:
            for key in ("base", "variant"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"act.{key}", getattr(self, key), f"only RAA has a {key}, not {self.name}")
            return
        for key, valid in (("base", RAA_BASES), ("variant", RAA_VARIANTS)):
            value = getattr(self, key)
            if value is not None and value not in valid:
                raise ConfigError(f"act.{key}", value, f"not an RAA {key}", valid)
        if self.name in _RAA_FIXED:
            for key, fixed in zip(("base", "variant"), _RAA_FIXED[self.name]):
                value = getattr(self, key)
                if value is not None and value != fixed:
                    raise ConfigError(f"act.{key}", value, f"{self.name} is RAA with {key} {fixed}; for another "
                                      f"{key} use act=raa act.{key}={value}")

    @property
    def registry_name(self) -> str:
        """The registry entry this spec builds (``raa`` + base/variant -> ``raa_relu_simple``)."""
        if self.name != "raa":
            return self.name
        base, variant = self.base or "gelu", self.variant or "token"
        return f"raa_{base}" if variant == "token" else f"raa_{base}_{variant}"

    def __str__(self) -> str:
        return self.registry_name

    def __call__(self, num_features: int = 0, channel_dim: int = -1) -> nn.Module:
        return _REGISTRY[self.registry_name](num_features, channel_dim)


def list_acts() -> list[str]:
    return sorted(_REGISTRY)


def act_needs_shape(name: str | ActSpec) -> bool:
    """True when the activation has per-site parameters sized by the feature dimension (RAA)."""
    name = _registry_name(name)
    _check_name(name)
    return name in _NEEDS_SHAPE


def _registry_name(act: str | ActSpec) -> str:
    return act.registry_name if isinstance(act, ActSpec) else act


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise KeyError(f"Unknown activation {name!r}. Valid names: {', '.join(list_acts())}")


def create_act(name: str | ActSpec, num_features: int = 0, channel_dim: int = -1) -> nn.Module:
    """Build activation ``name`` (a registry name or an :class:`ActSpec`); ``num_features``/``channel_dim``
    size RAA (ignored by baselines)."""
    name = _registry_name(name)
    _check_name(name)
    return _REGISTRY[name](num_features, channel_dim)
