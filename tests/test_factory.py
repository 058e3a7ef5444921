"""The build layer's registries: a task and a model registered from outside dnrt.factory are checked
and built through it (nothing above the registries knows the task), and the data set the checks built
is the one the run is built from."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from dnrt.config import ConfigError
from dnrt.factory import Task, build_model, build_optimizer, build_scheduler, tasks
from dnrt.models import registry
from dnrt.preflight import check_run
from dnrt.types import Components, DistInfo
from tests.harness.config import compose_cfg


class ToyData:
    """A data set of the ``toy`` task; counts how often it is made."""

    task = "toy"
    made = 0

    def __init__(self, name: str, num_classes: int = 3):
        type(self).made += 1
        self.name, self.num_classes, self.in_chans = name, num_classes, 4


def create_toy(name: str, num_classes: int, in_chans: int, act=None, width: int = 8) -> registry.BuiltModel:
    """The ``toy_mlp`` model: what its config's ``_target_`` builds."""
    model = registry.model_spec(name).build(in_chans=in_chans, num_classes=num_classes, width=width)
    return registry.BuiltModel(model, [], "auto", None)


@pytest.fixture
def toy(monkeypatch):
    """The ``toy`` task and ``toy_mlp`` model registered for the test only; the calls they receive."""
    calls: dict[str, list] = {"fit": [], "build": []}

    def build(run, dist_info, device, dtype):
        calls["build"].append((run, device, dtype))
        built = build_model(run.cfg, "does not fit", num_classes=run.data.num_classes, in_chans=run.data.in_chans)
        optimizer = build_optimizer(run.cfg, built.model)
        return Components(run.data, built.model, built.model, None, optimizer, build_scheduler(run.cfg, optimizer, 1),
                          [], [], device, dtype, headline="val/toy")

    monkeypatch.setitem(tasks._TASKS, "toy", Task("toy", "toy set", build, lambda cfg, data: calls["fit"].append(data)))
    monkeypatch.setitem(registry._MODELS, "toy_mlp", registry.ModelSpec(
        lambda in_chans, num_classes, width: torch.nn.Sequential(torch.nn.Linear(in_chans, width),
                                                                 torch.nn.Linear(width, num_classes)), task="toy"))
    monkeypatch.setattr(ToyData, "made", 0)
    return calls


def toy_cfg(model: dict):
    cfg = compose_cfg(["trainer.threads=1", "trainer.progress=false"])
    with open_dict(cfg):
        cfg.dataset = OmegaConf.create({"_target_": f"{__name__}.ToyData", "name": "toy"})
        cfg.model = OmegaConf.create(model)
    return cfg


def test_a_registered_task_is_checked_and_built_from_the_data_the_checks_made(toy):
    from dnrt.factory import build_components

    cfg = toy_cfg({"_target_": f"{__name__}.create_toy", "name": "toy_mlp", "width": 5})
    run = check_run(cfg)
    assert run.task == "toy" and isinstance(run.data, ToyData) and toy["fit"] == [run.data]
    parts = build_components(run, DistInfo())
    assert ToyData.made == 1  # the build used the checked data set, not a second one
    assert [call[0] for call in toy["build"]] == [run] and parts.data is run.data and parts.headline == "val/toy"
    assert [m.out_features for m in parts.core] == [5, 3]


def test_a_model_of_another_task_is_refused_naming_the_task_s_models(toy):
    cfg = toy_cfg({"_target_": "dnrt.models.create_model", "name": "resnet18"})
    with pytest.raises(ConfigError, match=r"model.name=resnet18: dataset=toy is a toy set: choose a toy set model; "
                                          r"valid: toy_mlp$"):
        check_run(cfg)
    assert toy == {"fit": [], "build": []}
