"""``python launch.py --rerun RUN_ID [overrides]``: launch a logged run (or a whole sweep) again.

A training run is re-run from its logged config (the ``config.yaml`` artifact every run stores),
with ``key=value`` overrides applied to it, through the same entry point as any run: so the
signature rules hold (no override: the same run, skipped or resumed; ``force=true``: a fresh one).
A sweep's parent run is re-run by composing its recorded command again (``dnrt.overrides``, and
the launcher it used, ``dnrt.hydra_overrides``) as a multirun with the overrides appended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from ..config import signature_version
from ..tracking import TrackingUnreachable, git_sha, open_client, resolve_uri
from ..tracking_schema import (
    CONFIG_ARTIFACT,
    GIT_TAG,
    HYDRA_OVERRIDES_TAG,
    KIND_TAG,
    OVERRIDES_TAG,
    SIGNATURE_TAG,
    SWEEP_KIND,
)
from .entry import run_job

_MISSING = object()


class RerunRefused(Exception):
    """The id cannot be re-run; the message is the one line to print (exit status 2)."""


@dataclass(frozen=True)
class Rerun:
    """What to launch: one run's config (``cfg``), or a sweep's multirun command line (``argv``)."""

    run_id: str
    cfg: DictConfig | None = None
    argv: list[str] | None = None
    warning: str | None = None


def split_rerun(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """``argv`` (without the script) -> (the ``--rerun`` id or None, the other arguments)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--rerun":
            if i + 1 >= len(args) or args[i + 1].startswith("-") or "=" in args[i + 1]:
                raise RerunRefused("error: --rerun needs a run id: launch.py --rerun RUN_ID [key=value ...]")
            return args[i + 1], args[:i] + args[i + 2:]
        if arg.startswith("--rerun="):
            return arg.split("=", 1)[1], args[:i] + args[i + 1:]
    return None, args


def _uri(overrides: Sequence[str]) -> str:
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("tracking.uri=")]
    return resolve_uri(given[-1] if given and given[-1] not in ("", "null") else None)


def version_warning(run, cfg: DictConfig | None) -> str | None:
    """One line naming both code versions when the run was logged by another git SHA or signature
    version than this checkout's; None when they agree (a run with no record of either is not warned)."""
    tags = run.data.tags
    notes = []
    logged_sha, sha = tags.get(GIT_TAG), git_sha()
    if logged_sha and logged_sha != sha:
        notes.append(f"git {logged_sha[:12]} -> {sha[:12]}")
    if cfg is not None and tags.get(SIGNATURE_TAG) and tags[SIGNATURE_TAG] != str(signature_version(cfg)):
        notes.append(f"signature version {tags[SIGNATURE_TAG]} -> {signature_version(cfg)}")
    if not notes:
        return None
    return f"warning: run {run.info.run_id} was logged by another code version ({', '.join(notes)}); re-running it here"


def apply_overrides(cfg: DictConfig, overrides: Sequence[str], run_id: str) -> DictConfig:
    """``key=value`` overrides on a logged config; a group choice (``model=vit_tiny``), an unknown key
    or a Hydra-only form (``+key``, ``~key``) is refused: the logged config has no groups left."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key.startswith(("+", "~", "hydra")):
            raise RerunRefused(f"error: --rerun {run_id}: override {item!r} is not key=value on the run's config")
        node = OmegaConf.select(cfg, key, default=_MISSING)
        if node is _MISSING:
            raise RerunRefused(f"error: --rerun {run_id}: {key} is not a key of the run's logged config")
        if isinstance(node, DictConfig):
            raise RerunRefused(f"error: --rerun {run_id}: {key}={value} chooses a config group; a re-run keeps "
                               f"the run's {key} and takes its keys ({key}.name=..., ...)")
        OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=False)
    return cfg


@contextlib.contextmanager
def _no_progress_bar():
    """MLflow's download progress bar off: the command's stderr is its one-line messages."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def resolve(run_id: str, overrides: Sequence[str]) -> Rerun:
    """The run ``run_id`` in the store (``tracking.uri=`` among ``overrides``, else the default one),
    as something to launch. Raises :class:`RerunRefused` for an unknown id or a run without a config."""
    uri = _uri(overrides)
    try:
        client = open_client(uri)
    except TrackingUnreachable as exc:
        raise RerunRefused(f"error: --rerun {run_id}: {exc}".splitlines()[0]) from None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RerunRefused(f"error: --rerun {run_id}: no such run in {uri}") from None
    tags = run.data.tags
    if tags.get(KIND_TAG) == SWEEP_KIND:
        if OVERRIDES_TAG not in tags:
            raise RerunRefused(f"error: --rerun {run_id}: the sweep's parent run has no recorded command "
                               f"(tag {OVERRIDES_TAG})")
        given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
        recorded = shlex.split(tags[OVERRIDES_TAG]) + shlex.split(tags.get(HYDRA_OVERRIDES_TAG, ""))
        argv = ["-m", *(o for o in recorded if o.split("=", 1)[0].lstrip("+~") not in given), *overrides]
        return Rerun(run_id, argv=argv, warning=version_warning(run, None))
    with tempfile.TemporaryDirectory(prefix="dnrt-rerun-") as tmp, _no_progress_bar():
        try:
            path = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        except (MlflowException, OSError):
            raise RerunRefused(f"error: --rerun {run_id}: the run has no logged config "
                               "(config.yaml artifact)") from None
        cfg = OmegaConf.load(Path(path))
    if not isinstance(cfg, DictConfig) or "trainer" not in cfg:
        raise RerunRefused(f"error: --rerun {run_id}: its config.yaml is not a dnrt run config")
    cfg = apply_overrides(cfg, overrides, run_id)
    return Rerun(run_id, cfg=cfg, warning=version_warning(run, cfg))


def rerun_main(run_id: str, overrides: Sequence[str]) -> list[str] | None:
    """Run ``run_id`` again: a training run here and now (returns None); for a sweep, the multirun
    command line for Hydra to launch (returned). Prints the version warning; exits 2 when refused."""
    try:
        rerun = resolve(run_id, overrides)
    except RerunRefused as exc:
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if rerun.warning:
        print(rerun.warning, file=sys.stderr, flush=True)
    if rerun.argv is not None:
        return rerun.argv
    # the format of Hydra's job logging, which a run launched through Hydra gets
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    run_job(rerun.cfg)
    return None
