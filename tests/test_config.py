"""Every option of every config group composes; identity (params, hash, name) is stable."""

import pytest
from hydra.utils import instantiate

from dnrt.config import ConfigError, config_hash, flat_params, run_name, validate
from tests.harness.config import CONF, compose_cfg

GROUPS = ["model", "act", "regularizer", "dataset", "optim", "sched", "trainer", "tracking", "mechanism", "experiment",
          "hparams_search"]


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"], return_hydra_config=group in ("experiment", "hparams_search"))
    validate(cfg)
    if group in ("experiment", "hparams_search"):  # presets are sweeps over groups that exist
        assert str(cfg.hydra.mode) == "RunMode.MULTIRUN" and cfg.hydra.sweeper.params
        return
    if group == "mechanism":
        assert cfg.regularizer.name == ("arr" if option == "dnrt" else "none")
        return
    assert cfg[group] is not None
    if group == "act":
        assert cfg.act.name == option
    if group in ("model", "dataset", "regularizer"):
        assert cfg[group].name


def test_groups_have_the_required_options():
    assert {"resnet18", "vit_tiny"} <= set(_options("model"))
    assert {"relu", "gelu", "silu", "elu", "selu", "softplus", "raa", "raa_relu"} <= set(_options("act"))
    assert {"none", "arr"} <= set(_options("regularizer"))
    assert {"digits", "cifar10", "cifar100", "imagefolder", "synthetic"} <= set(_options("dataset"))
    assert {"adamw", "sgd"} <= set(_options("optim")) and {"cosine", "step"} <= set(_options("sched"))


def test_act_options_name_registry_activations():
    from dnrt.nn import list_acts

    assert set(_options("act")) <= set(list_acts())


def test_optim_and_sched_instantiate():
    import torch

    cfg = compose_cfg(["optim=sgd", "sched=step"])
    opt = instantiate(cfg.optim, model_or_params=torch.nn.Linear(2, 2))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == cfg.optim.lr
    sched, _ = instantiate(cfg.sched, optimizer=opt, num_epochs=3, updates_per_epoch=5, step_on_epochs=False)
    assert hasattr(sched, "step_update")


def test_params_hash_and_name():
    cfg = compose_cfg(["model=vit_tiny", "act=raa", "regularizer=arr", "seed=2"])
    params = flat_params(cfg)
    for key in ("model.name", "act.name", "regularizer.name", "regularizer.weight", "dataset.name", "seed", "optim.lr"):
        assert key in params
    assert not any(k.startswith("hydra") for k in params)
    assert run_name(cfg) == "vit_tiny-raa-arr-digits-s2"
    same = compose_cfg(["seed=2", "act=raa", "regularizer=arr", "model=vit_tiny", "trainer.progress=false",
                        "tracking.uri=sqlite:///elsewhere.db", "trainer.workers=3"])
    assert config_hash(same) == config_hash(cfg)  # execution-only keys do not change identity
    assert config_hash(compose_cfg(["model=vit_tiny", "act=raa", "regularizer=arr", "seed=3"])) != config_hash(cfg)
    assert config_hash(compose_cfg(["model=vit_tiny", "act=raa", "regularizer=arr", "seed=2", "optim.lr=0.01"])) \
        != config_hash(cfg)


@pytest.mark.parametrize("override,key", [
    ("optim.lr=0", "optim.lr"), ("optim.lr=-1e-3", "optim.lr"), ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.batch_size=0", "trainer.batch_size"), ("regularizer.weight=-1", "regularizer.weight"),
    ("regularizer.momentum=0", "regularizer.momentum"), ("regularizer.momentum=1.5", "regularizer.momentum"),
])
def test_invalid_values_name_the_key(override, key):
    extra = ["regularizer=arr"] if override.startswith("regularizer") else []
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose_cfg([*extra, override]))


def test_momentum_one_is_valid():
    validate(compose_cfg(["regularizer=arr", "regularizer.momentum=1.0"]))


NO_PLUGIN = """
import sys
sys.modules["hydra_plugins.dnrt_launcher"] = None  # Hydra's plugin scan cannot import dnrt's launcher plugin
from hydra import compose, initialize_config_dir
import dnrt
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose(config_name="config", overrides=["hydra/launcher=slurm", "regularizer=arr"], return_hydra_config=True)
    print(cfg.hydra.launcher._target_, cfg.hydra.sweeper._target_, cfg.trainer.epochs, cfg.regularizer.momentum)
    try:
        compose(config_name="config", overrides=["trainer.epochs=three"])
    except Exception as exc:
        print(type(exc.__cause__).__name__, str(exc.__cause__).splitlines()[0])
print("plugin imported:", sys.modules["hydra_plugins.dnrt_launcher"] is not None)
"""


def test_conf_composes_with_its_schemas_without_the_launcher_plugin():
    """Importing dnrt registers every schema conf/ names (groups, launchers, sweeper), so a process
    whose Hydra plugin scan never ran the launcher plugin composes conf/ with the same typed checks."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", NO_PLUGIN, str(CONF)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    targets, typed_error, plugin = proc.stdout.strip().splitlines()
    assert targets.split() == ["hydra_plugins.dnrt_launcher.packed.PackedSlurmLauncher",
                               "hydra_plugins.dnrt_launcher.packed.CheckedBasicSweeper",
                               str(compose_cfg([]).trainer.epochs), "0.1"]
    assert typed_error.startswith("ValidationError ") and "'three'" in typed_error  # the schema's int, not a string
    assert plugin == "plugin imported: False"
