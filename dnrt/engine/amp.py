"""Mixed precision: ``trainer.amp`` -> the autocast dtype, the autocast context for a forward pass
and, for float16, a GradScaler."""

from __future__ import annotations

import contextlib
import warnings

import torch

from ..config import ConfigError

# auto: bf16 on CUDA, off elsewhere; true: bf16; false: off; bf16; fp16 (with a GradScaler).
AMP_CHOICES = ("auto", "true", "false", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(setting, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``trainer.amp=setting`` on ``device`` (None: full precision).
    Raises :class:`ConfigError` for an unknown value or a dtype the device cannot autocast to."""
    if isinstance(setting, bool):
        dtype = torch.bfloat16 if setting else None
    elif setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    elif isinstance(setting, str) and setting in _DTYPES:
        dtype = _DTYPES[setting]
    else:
        raise ConfigError("trainer.amp", setting, "unknown mixed-precision setting", AMP_CHOICES)
    if dtype is not None:
        _check_autocast(setting, device, dtype)
    if dtype is torch.float16 and device.type == "cpu":
        warnings.warn("trainer.amp=fp16 on the CPU: float16 autocast runs, but much slower than float32 "
                      "(docs/measurements.md); trainer.amp=false for CPU runs", stacklevel=2)
    return dtype


def _check_autocast(setting, device: torch.device, dtype: torch.dtype) -> None:
    # torch does not raise for an unsupported autocast dtype: it warns and silently runs in float32.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autocast(device_type=device.type, dtype=dtype):
                pass
        except (RuntimeError, ValueError) as exc:
            raise ConfigError("trainer.amp", setting, f"{device.type} cannot autocast to {dtype}: {exc}",
                              ["false"]) from None
    if any("not supported" in str(w.message) or "Disabling autocast" in str(w.message) for w in caught):
        raise ConfigError("trainer.amp", setting, f"{device.type} autocast does not support {dtype} in "
                          f"torch {torch.__version__}", ["false", "auto"])


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``'s type; a no-op context for full precision (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for float16 autocast (its range needs one); None otherwise."""
    if dtype is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)
