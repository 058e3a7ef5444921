"""Rebuild a trained run from its checkpoint and collect, over a few validation batches, the aggregated
responses at the last tap (per class), the RAA shifts s(x) of every RAA layer and, for chosen
layers, the MLP activation's output on the class token (:mod:`analysis.mlp_responses`)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from dnrt.engine.checkpoint import load_checkpoint
from dnrt.factory import build_components
from dnrt.models import model_spec
from dnrt.nn import RAA, ResponseTaps
from dnrt.preflight import check_run
from dnrt.tracking import with_retry
from dnrt.tracking_schema import CHECKPOINT_ARTIFACT, CHECKPOINT_TAG, CONFIG_ARTIFACT
from dnrt.types import DistInfo

from .mlp_responses import MlpActTaps
from .runs import AnalysisError, quiet_downloads

MAX_SHIFTS_PER_LAYER = 20_000  # enough for a violin; keeps a ResNet's per-position shifts small


@dataclass
class Collected:
    """What one run's model produced on the validation batches."""

    run_id: str
    run_name: str
    cfg: DictConfig
    responses: np.ndarray  # [N, d]: last tap's aggregated response
    labels: np.ndarray  # [N]
    tap: str  # module path of the last tap
    shifts: dict[str, np.ndarray] = field(default_factory=dict)  # RAA module path -> s(x) samples
    memory: np.ndarray | None = None  # ARR's per-class running mean at the last tap, [K, d]
    predictions: np.ndarray | None = None  # [N] argmax of the logits: checks that the right weights loaded
    mlp: dict[int, np.ndarray] = field(default_factory=dict)  # 1-based layer -> MLP act output [N, hidden]
    mlp_paths: dict[int, str] = field(default_factory=dict)  # 1-based layer -> module path
    pooling: str = ""  # how a token sequence became one row: cls (class token) or mean_tokens

    @property
    def has_arr(self) -> bool:
        return str(self.cfg.regularizer.name) == "arr"


def _has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    folder = path.rsplit("/", 1)[0] if "/" in path else None
    try:
        return any(a.path == path for a in with_retry(client.list_artifacts, run_id, folder))
    except (MlflowException, OSError):
        return False


def checkpoint_path(client: MlflowClient, run: Run, workdir: Path) -> Path:
    """The run's ``last.pt``: its ``checkpoints/last.pt`` artifact if logged, else the ``dnrt.checkpoint``
    tag's path."""
    if _has_artifact(client, run.info.run_id, CHECKPOINT_ARTIFACT):
        return Path(with_retry(client.download_artifacts, run.info.run_id, CHECKPOINT_ARTIFACT, str(workdir)))
    tagged = run.data.tags.get(CHECKPOINT_TAG)
    if tagged and Path(tagged).is_file():
        return Path(tagged)
    raise AnalysisError(f"run {run.info.run_name} ({run.info.run_id}) has no checkpoint: no {CHECKPOINT_ARTIFACT} "
                        f"artifact and no file at its {CHECKPOINT_TAG} tag ({tagged or 'unset'}); "
                        "train with trainer.log_checkpoint=true or keep trainer.ckpt_root")


def run_config(client: MlflowClient, run: Run, ckpt: dict, workdir: Path) -> DictConfig:
    """The run's resolved ``config.yaml`` artifact, else the copy inside its checkpoint."""
    if _has_artifact(client, run.info.run_id, CONFIG_ARTIFACT):
        path = with_retry(client.download_artifacts, run.info.run_id, CONFIG_ARTIFACT, str(workdir))
        return OmegaConf.create(Path(path).read_text())
    return OmegaConf.create(ckpt["config_yaml"])


def _last_taps(cfg: DictConfig, model: torch.nn.Module) -> tuple[list[str], str]:
    """Where ARR taps (or would tap) this model: the regularizer's taps, else the model's defaults."""
    reg = cfg.get("regularizer", {})
    spec = model_spec(str(cfg.model.name))
    taps = reg.get("taps") or (spec.taps_for(str(cfg.model.get("stem", "cifar"))) if spec else None)
    pooling = reg.get("pooling") or (spec.pooling if spec else "auto")
    if not taps:
        from dnrt.models import default_taps  # timm models: the registry's own fallback

        taps, pooling = default_taps(model)
    return list(taps), pooling



@torch.no_grad()
def collect(client: MlflowClient, run_id: str, batches: int = 8, device: str = "cpu",
            mlp_layers: Sequence[int] = ()) -> Collected:
    """Reload ``run_id`` and run ``batches`` validation batches through it; ``mlp_layers`` (1-based)
    also hooks those layers' MLP activations (an unknown layer is an :class:`AnalysisError`)."""
    try:
        run = with_retry(client.get_run, run_id)
    except MlflowException as exc:
        raise AnalysisError(f"--run-id {run_id}: no such run ({str(exc).splitlines()[0]})") from exc
    with tempfile.TemporaryDirectory(prefix="dnrt-analysis-") as tmp, quiet_downloads():
        ckpt = load_checkpoint(checkpoint_path(client, run, Path(tmp)))
        cfg = run_config(client, run, ckpt, Path(tmp))
    # Analysis runs where it is started: the run's own device, compile or loader workers may not exist here.
    cfg.trainer.device, cfg.trainer.compile, cfg.trainer.workers = device, False, 0
    try:
        comp = build_components(check_run(cfg, fit=False), DistInfo())
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # e.g. its data set is not on this machine
        raise AnalysisError(f"cannot rebuild run {run.info.run_name}: {type(exc).__name__}: {exc}") from exc
    model = comp.core.eval()
    model.load_state_dict(ckpt["model"])
    if comp.arr is not None and ckpt.get("arr") is not None:
        comp.arr.load_state_dict(ckpt["arr"])
    own_taps = comp.arr is None
    taps = ResponseTaps(model, *_last_taps(cfg, model)) if own_taps else comp.arr.taps
    mlp = MlpActTaps(model, mlp_layers, taps.pooling, str(cfg.model.name)) if mlp_layers else None
    shifts: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, RAA):
            shifts[name] = []
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: shifts[name].append(m.shift(args[0]).float().flatten().cpu())))
    responses, labels, predictions = [], [], []
    try:
        for i, (x, y) in enumerate(comp.val_loader):
            if i >= batches:
                break
            logits = model(x.to(comp.device))
            responses.append(taps.responses[-1].float().cpu())
            labels.append(y.cpu())
            predictions.append(logits.argmax(-1).cpu())
    finally:
        for h in handles:
            h.remove()
        if mlp is not None:
            mlp.remove()
        if own_taps:
            taps.remove()
    if not responses:
        raise AnalysisError(f"run {run.info.run_name}: its validation loader yielded no batch")
    rng = np.random.default_rng(0)
    sampled = {}
    for name, parts in shifts.items():
        values = torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)
        if len(values) > MAX_SHIFTS_PER_LAYER:
            values = rng.choice(values, MAX_SHIFTS_PER_LAYER, replace=False)
        sampled[name] = values
    memory = comp.arr.memories[-1].mean.float().cpu().numpy() if comp.arr is not None else None
    return Collected(run_id, run.info.run_name, cfg, torch.cat(responses).numpy(), torch.cat(labels).numpy(),
                     taps.paths[-1], sampled, memory, torch.cat(predictions).numpy(),
                     {k: v.numpy() for k, v in mlp.arrays().items()} if mlp else {},
                     dict(mlp.paths) if mlp else {}, taps.pooling)
