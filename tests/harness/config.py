"""The repository's paths and the config overrides the tests compose with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
# Small and fast: a third of digits, batches of 32, one intra-op thread.
FAST = ["dataset.fraction=0.3", "trainer.batch_size=32", "trainer.progress=false", "trainer.threads=1"]
# timm's test_resnet through the resnet18 config: the ResNet code path (stem, four stages of basic blocks,
# RAA and ARR at every tap) at a fraction of resnet18's cost, for the tests of the machinery (where runs
# stop, resume and fail, what they log, plan and refuse), not of learning.
TINY_RESNET = ["model=resnet18", "model.name=test_resnet"]
# Those tests' runs: the tiny ResNet on 15% of digits.
SMALL = [*TINY_RESNET, *FAST, "dataset.fraction=0.15"]


def compose_cfg(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` through Hydra's compose API."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
