"""Activation surgery: swap every activation module of a built model for a registry activation.

A dry forward pass records each activation *call*: its input shape and the last leaf module with a
width (Linear, conv, norm) that ran before it. The layout is read from the data: the channel axis
is the one (1 or last) whose size equals that producer's width, so a ConvNeXt Linear MLP over
permuted (B, H, W, C) maps is channels-last and timm's ``LayerNorm2d`` (an ``nn.LayerNorm``
subclass that keeps NCHW) is channel-first. A module that is called more than once
(torchvision's BasicBlock calls one ``relu`` twice) gets one new activation per call site,
dispatched in call order, so sites never share parameters. Functional activations (``F.gelu``
inside a forward) have no module to replace; they are found with a torch-function mode and
reported.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import activations as timm_acts
from torch import nn
from torch.overrides import TorchFunctionMode

from .activations import act_needs_shape, create_act

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.LeakyReLU,
    nn.Mish, nn.Hardswish, nn.Tanh, nn.PReLU,
    timm_acts.GELU, timm_acts.GELUTanh, timm_acts.QuickGELU, timm_acts.Swish, timm_acts.Mish,
    timm_acts.HardSwish, timm_acts.PReLU,
)
_FUNCTIONAL_ACTS = {
    F.relu, F.relu_, F.gelu, F.silu, F.elu, F.selu, F.softplus, F.leaky_relu, F.mish, F.hardswish,
    F.relu6, torch.relu, torch.relu_, torch.selu, torch.celu,
}


@dataclass
class CallSite:
    path: str
    shape: tuple[int, ...]
    channel_dim: int

    @property
    def num_features(self) -> int:
        return self.shape[self.channel_dim]


@dataclass
class SurgeryReport:
    """What :func:`swap_activations` did. ``functional`` lists modules that call an activation
    function directly: those nonlinearities were left as they are."""

    act: str
    sites: list[CallSite] = field(default_factory=list)
    shared_modules: list[str] = field(default_factory=list)
    functional: list[str] = field(default_factory=list)
    added_params: int = 0


class CallSiteDispatch(nn.Module):
    """Stands in for one activation module that a forward calls several times: the i-th call in
    a forward runs ``sites[i]``. The counter is reset by a pre-hook on the root model."""

    def __init__(self, sites: list[nn.Module]):
        super().__init__()
        self.sites = nn.ModuleList(sites)
        self._next = 0

    def reset(self) -> None:
        self._next = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._next >= len(self.sites):
            raise RuntimeError(
                f"shared activation called {self._next + 1} times in one forward, but surgery saw "
                f"{len(self.sites)} call sites; the model's control flow changed after surgery"
            )
        out = self.sites[self._next](x)
        self._next += 1
        return out


def _reset_dispatchers(root: nn.Module, _args) -> None:
    for m in root.modules():
        if isinstance(m, CallSiteDispatch):
            m.reset()


class _FunctionalActFinder(TorchFunctionMode):
    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.found: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _FUNCTIONAL_ACTS and self.stack and not self.stack[-1].endswith("#act"):
            self.found.add(self.stack[-1] or "<root>")
        return func(*args, **(kwargs or {}))


def producer_width(m: nn.Module) -> int | None:
    """The number of channels ``m`` produces (None for modules without one: dropout, identity)."""
    if isinstance(m, nn.Linear):
        return m.out_features
    if isinstance(m, nn.modules.conv._ConvNd):
        return m.out_channels
    if isinstance(m, nn.modules.batchnorm._NormBase):
        return m.num_features
    if isinstance(m, nn.GroupNorm):
        return m.num_channels
    if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
        return m.normalized_shape[0]
    return None


def _writes_last_axis(m: nn.Module) -> bool:
    """Whether ``m``'s output has its channels last by construction: a Linear, or a LayerNorm
    whose forward is the stock one (subclasses such as ``LayerNorm2d`` permute to NCHW)."""
    return isinstance(m, nn.Linear) or (isinstance(m, nn.LayerNorm) and type(m).forward is nn.LayerNorm.forward)


def infer_channel_dim(shape: tuple[int, ...], producer: nn.Module | None) -> int:
    """``-1`` (channels last) or ``1`` (channel first) for an activation input of ``shape``.

    The axis whose size equals the producer's width decides. When both match (or neither, or
    there is no producer), a Linear / stock LayerNorm producer means channels last; otherwise
    rank <= 3 means tokens (B, N, C) and rank 4 means NCHW.
    """
    if len(shape) <= 2:
        return -1
    width = producer_width(producer) if producer is not None else None
    first, last = shape[1] == width, shape[-1] == width
    if first != last:
        return 1 if first else -1
    if producer is not None and _writes_last_axis(producer):
        return -1
    return -1 if len(shape) <= 3 else 1


def find_activation_sites(model: nn.Module, sample: torch.Tensor, include: str = "*"
                          ) -> tuple[dict[str, list[CallSite]], list[str]]:
    """Dry-run ``model(sample)``; return call sites per activation module path and the modules
    that call functional activations."""
    acts = {n: m for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)
            and fnmatch.fnmatchcase(n, include)}
    calls: dict[str, list[CallSite]] = {n: [] for n in acts}
    producer: list[nn.Module | None] = [None]  # the last leaf with a width that ran
    stack: list[str] = []
    handles = []

    for name, mod in model.named_modules():
        is_act = name in acts
        tag = name + "#act" if is_act else name

        def pre(m, args, _tag=tag):
            stack.append(_tag)

        def post(m, args, out, _name=name, _is_act=is_act):
            stack.pop()
            if _is_act:
                shape = tuple(args[0].shape)
                calls[_name].append(CallSite(_name, shape, infer_channel_dim(shape, producer[0])))
            elif producer_width(m) is not None and not any(True for _ in m.children()):
                producer[0] = m

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    finder = _FunctionalActFinder(stack)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), finder:
            model(sample)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return calls, sorted(finder.found)


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, leaf, new)


def swap_activations(model: nn.Module, act: str, sample: torch.Tensor | None = None,
                     include: str = "*", strict_functional: bool = False) -> SurgeryReport:
    """Replace every activation module of ``model`` (in place) with registry activation ``act``.

    Args:
        model: any constructed module (timm, torchvision, your own).
        act: a registry name (``relu``, ``gelu``, ``raa``, ``raa_relu``, ...).
        sample: an input batch for the dry forward that sizes RAA; needed when ``act`` has
            per-site parameters or a module is shared between call sites.
        include: glob on module paths; only matching activations are swapped.
        strict_functional: raise instead of reporting when a functional activation is found.
    Returns:
        a :class:`SurgeryReport` with every call site, shared modules and functional calls.
    """
    needs_shape = act_needs_shape(act)
    report = SurgeryReport(act=act)
    if sample is None:
        if needs_shape:
            raise ValueError(f"activation {act!r} has per-site parameters: pass a sample input for the dry run")
        targets = [n for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)
                   and fnmatch.fnmatchcase(n, include)]
        for name in targets:
            _set_submodule(model, name, create_act(act))
        report.sites = [CallSite(n, (), -1) for n in targets]
        return report

    calls, functional = find_activation_sites(model, sample, include)
    report.functional = functional
    if functional and strict_functional:
        raise RuntimeError(f"modules call functional activations that surgery cannot replace: {functional}")
    before = sum(p.numel() for p in model.parameters())
    for name, sites in calls.items():
        if not sites:  # defined but never called in forward: swap it anyway, it is dead weight
            _set_submodule(model, name, create_act(act) if not needs_shape else nn.Identity())
            continue
        new = [create_act(act, s.num_features, s.channel_dim) for s in sites]
        report.sites.extend(sites)
        if len(sites) == 1:
            _set_submodule(model, name, new[0])
        else:
            report.shared_modules.append(name)
            _set_submodule(model, name, CallSiteDispatch(new))
    if report.shared_modules and not getattr(model, "_dnrt_dispatch_hook", False):
        model.register_forward_pre_hook(_reset_dispatchers)
        model._dnrt_dispatch_hook = True
    report.added_params = sum(p.numel() for p in model.parameters()) - before
    return report
