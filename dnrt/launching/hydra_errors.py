"""Hydra's own composition errors in dnrt's one-line form: an unknown option of a config group
(``model=resnet19``) or an unknown key (``trainer.epochz=3``), with the closest valid name.

Light on imports on purpose (difflib only): ``launch.py`` installs it in every process, refused
command lines included.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def explain(exc: BaseException) -> str | None:
    """One line (no ``error:`` prefix) for a composition error of Hydra's; None for any other error."""
    from hydra.errors import ConfigCompositionException, MissingConfigException

    if isinstance(exc, MissingConfigException) and exc.options and "/" in str(exc.missing_cfg_file):
        group, _, name = str(exc.missing_cfg_file).rpartition("/")
        options = sorted(exc.options)
        return (f"{group}={name}: no such option of the config group {group}{_suggest(name, options)}; "
                f"valid: {', '.join(options)}")
    cause = exc.__cause__
    parent = getattr(cause, "parent_node", None)
    if isinstance(exc, ConfigCompositionException) and getattr(cause, "full_key", None) and parent is not None:
        name = str(cause.key)
        valid = sorted(str(k) for k in parent if k != "hydra" and not str(k).startswith("_"))
        return f"{cause.full_key}: unknown key{_suggest(name, valid)}; valid: {', '.join(valid)}"
    return None


def one_line_errors(run_and_report: Callable[[Callable[[], Any]], Any]) -> Callable[[Callable[[], Any]], Any]:
    """Wrap Hydra's ``run_and_report`` so that its composition errors print :func:`explain`'s line
    to stderr as ``error: ...`` and exit 2 (``HYDRA_FULL_ERROR=1`` keeps Hydra's own report)."""

    def report(func: Callable[[], Any]) -> Any:
        def explained() -> Any:
            try:
                return func()
            except Exception as exc:
                line = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else explain(exc)
                if line is None:
                    raise
                print(f"error: {line}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None

        return run_and_report(explained)

    return report
