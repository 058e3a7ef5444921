"""The config is the single truth: every key acts or is refused, refusals happen before anything is
created, sweeps are checked and planned before fan-out, and run identity survives upgrades."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from dnrt.config import ConfigError, config_hash
from dnrt.engine.distributed import DistInfo
from dnrt.factory import build_components
from dnrt.launching.context import CONTEXT_FILE
from dnrt.nn import RAA
from dnrt.preflight import check_run, model_task
from dnrt.tracking_schema import (
    CHECKPOINT_TAG,
    HASH_TAG,
    HEARTBEAT_TAG,
    JOB_TAG,
    KIND_TAG,
    SIGNATURE_TAG,
    STARTUP_TAG,
    SWEEP_KIND,
    SWEEP_TAG,
)
from dnrt.train import train
from dnrt.types import RunContext
from tests.harness.config import CONF, FAST, TINY_RESNET, compose_cfg

ONE_EPOCH = [*TINY_RESNET, *FAST, "trainer.epochs=1", "tracking.experiment=test"]


def _raa_layers(cfg) -> list[RAA]:
    comps = build_components(check_run(cfg, fit=False), DistInfo())
    return [m for m in comps.core.modules() if isinstance(m, RAA)]


def _n_params(cfg) -> int:
    return sum(p.numel() for p in build_components(check_run(cfg, fit=False), DistInfo()).core.parameters())


@pytest.mark.slow
def test_act_keys_build_the_module():
    named = _raa_layers(compose_cfg(["model=resnet18", "act=raa_gelu_simple", *FAST]))
    keyed = _raa_layers(compose_cfg(["model=resnet18", "act=raa", "act.variant=simple", *FAST]))
    assert named and len(named) == len(keyed)
    for a, b in zip(named, keyed):
        assert (a.variant, a.base) == (b.variant, b.base) == ("simple", "gelu")
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    # the variant key changes what is trained: different parameter counts, different signatures
    simple = compose_cfg(["model=resnet18", "act=raa", "act.variant=simple", *FAST])
    token = compose_cfg(["model=resnet18", "act=raa", "act.variant=token", *FAST])
    assert _n_params(simple) != _n_params(token)
    relu_base = _raa_layers(compose_cfg(["model=resnet18", "act=raa", "act.base=relu", *FAST]))
    assert {m.base for m in relu_base} == {"relu"}


@pytest.mark.parametrize("overrides,key", [
    (["+model.foo=3"], "model.foo"),
    (["+dataset.foo=3"], "dataset.foo"),
    (["+act.foo=3"], "act.foo"),
    (["+trainer.foo=3"], "trainer.foo"),
    (["+tracking.foo=3"], "tracking.foo"),
    (["regularizer=arr", "+regularizer.foo=3"], "regularizer.foo"),
    (["+foo=3"], "foo"),
    (["+optim.foo=3"], "optim.foo"),
    (["+sched.foo=3"], "sched.foo"),
    (["optim=paper", "+optim.foo=3"], "optim.foo"),
    (["act=raa", "act.variant=wide"], "act.variant"),
    (["act=gelu", "+act.variant=simple"], "act.variant"),
    (["act=raa_relu_simple", "act.variant=token"], "act.variant"),
    (["model.name=not_a_model"], "model.name"),
    (["trainer.epochs=0"], "trainer.epochs"),
    (["regularizer=arr", "regularizer.pooling=max"], "regularizer.pooling"),
    (["dataset=cifar10", "data_dir=/nonexistent"], "dataset.root"),
])
def test_bad_keys_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        check_run(compose_cfg([*overrides, *FAST]))
    line = str(err.value)
    assert line.startswith(f"{key}=") and "\n" not in line, line


@pytest.mark.parametrize("override", ["trainer.epochs=three", "regularizer=arr regularizer.momentum=high",
                                      "tracking.stale_after_s=soon"])
def test_wrong_types_fail_at_composition_with_hydras_message(override):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="Error merging override"):
        compose_cfg(override.split())


def test_model_that_does_not_fit_the_input_is_refused_before_any_run():
    # a patch-4 ViT cannot split 33-px images: found by the (cached) build in the sweep check
    cfg = compose_cfg(["model=vit_tiny", "dataset=synthetic", "dataset.img_size=33", *FAST])
    with pytest.raises(ConfigError, match=r"^model\.name=vit_tiny: does not fit 33-px"):
        check_run(cfg)


@pytest.mark.slow
def test_bad_single_run_prints_one_line_exits_2_and_creates_no_run(store):
    before = store.runs()
    proc = store.launch("+model.foo=3", *ONE_EPOCH)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: model.foo=3: unknown key; valid: " + errors[0].split("valid: ")[1]]
    assert "Traceback" not in proc.stderr
    assert store.runs() == before == []


@pytest.mark.slow
def test_sweep_skips_invalid_cells_when_asked(store):
    proc = store.launch("-m", "optim.lr=1e-3,-1,2e-3", "sweep.on_invalid=skip", *ONE_EPOCH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished: 2, refused: 1" in proc.stdout
    assert sorted(float(r.data.params["optim.lr"]) for r in store.runs() if r.info.status == "FINISHED") == [1e-3, 2e-3]
    (parent,) = [r for r in store.runs(children_only=False) if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    summary = json.loads(Path(store.client.download_artifacts(parent.info.run_id, "summary.json")).read_text())
    (refused,) = [r for r in summary if r["status"] == "refused"]
    assert refused["detail"] == "optim.lr=-1: must be > 0"
    assert parent.data.metrics["sweep/refused"] == 1 and parent.data.metrics["sweep/finished"] == 2
    assert len(store.runs()) == 2  # the refused cell has no run


@pytest.mark.slow
def test_dry_run_plans_a_half_finished_sweep_and_creates_nothing(store):
    base = [*store.overrides(), *ONE_EPOCH]
    finished = train(compose_cfg([*base, "act=relu"]))
    stopped = train(compose_cfg([*base, "act=gelu", "trainer.epochs=2", "trainer.stop_after=1"]))
    assert (finished.status, stopped.status) == ("finished", "stopped")
    runs_before = {r.info.run_id: r.info.status for r in store.runs()}
    ckpts_before = sorted(p.name for p in store.ckpt_root.rglob("*"))
    proc = store.launch("-m", "act=relu,gelu,raa", *ONE_EPOCH, "trainer.epochs=1,2", "--plan-json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout[proc.stdout.index("{"):])
    by_cell = {(r["run_name"].split("-")[1], r["overrides"].split("trainer.epochs=")[1].split()[0]): r
               for r in plan["cells"]}
    assert by_cell[("relu", "1")]["action"] == "skip"
    assert by_cell[("relu", "1")]["run_name"] == "test_resnet-relu-none-digits-s0"
    assert by_cell[("gelu", "2")]["action"] == "resume" and by_cell[("gelu", "2")]["detail"].startswith("from epoch 1")
    assert {r["action"] for k, r in by_cell.items() if k not in {("relu", "1"), ("gelu", "2")}} == {"new"}
    assert plan["totals"] == {"skip": 1, "resume": 1, "new": 4}
    # the plan's signatures are the ones the runs carry
    assert by_cell[("relu", "1")]["config_hash"] == store.client.get_run(finished.run_id).data.tags[HASH_TAG]
    assert {r.info.run_id: r.info.status for r in store.runs()} == runs_before
    assert sorted(p.name for p in store.ckpt_root.rglob("*")) == ckpts_before
    assert not list(store.root.glob("multirun/**/" + CONTEXT_FILE))


def _compose_from(conf: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.slow
def test_identity_survives_a_new_key_at_its_neutral_value(store, tmp_path):
    overrides = [*store.overrides(), *ONE_EPOCH, "act=relu"]
    first = train(compose_cfg(overrides))
    assert first.status == "finished"
    # the upgrade: AdamW's amsgrad becomes a key, default false (what ran before), declared neutral
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    adamw = yaml.safe_load((conf / "optim" / "adamw.yaml").read_text())
    (conf / "optim" / "adamw.yaml").write_text(yaml.safe_dump({**adamw, "amsgrad": False}))
    main = yaml.safe_load((conf / "config.yaml").read_text())
    main["signature"]["neutral"] = {**(main["signature"]["neutral"] or {}), "optim.amsgrad": False}
    (conf / "config.yaml").write_text(yaml.safe_dump(main, sort_keys=False))
    upgraded = _compose_from(conf, overrides)
    assert upgraded.optim.amsgrad is False
    assert config_hash(upgraded) == config_hash(compose_cfg(overrides))
    again = train(upgraded)
    assert (again.status, again.run_id) == ("skipped", first.run_id)
    changed = _compose_from(conf, [*overrides, "optim.amsgrad=true"])
    assert config_hash(changed) != config_hash(upgraded)
    new = train(changed)
    assert new.status == "finished" and new.run_id != first.run_id
    # a signature-version bump re-signs everything
    bumped = _compose_from(conf, [*overrides, "signature.version=2"])
    assert config_hash(bumped) != config_hash(upgraded)
    tags = store.client.get_run(first.run_id).data.tags
    assert tags[SIGNATURE_TAG] == "1"


@pytest.mark.slow
def test_in_process_train_logs_what_a_sweep_cell_logs(store, tmp_path, monkeypatch):
    proc = store.launch("-m", "act=raa", *ONE_EPOCH, check=True)
    (cell,) = store.runs()
    (context_file,) = store.root.glob("multirun/**/" + CONTEXT_FILE)
    context = RunContext(**json.loads(context_file.read_text()))
    assert cell.data.tags["mlflow.parentRunId"] == context.parent_run_id
    assert cell.data.tags[SWEEP_TAG] == context.sweep_id
    assert "sweep summary" in proc.stdout
    for var in [v for v in __import__("os").environ if v.startswith(("DNRT_", "MLFLOW_"))]:
        monkeypatch.delenv(var)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    cfg = compose_cfg([f"tracking.uri={other}", "tracking.experiment=test", f"trainer.ckpt_root={store.ckpt_root}",
                       "act=raa", *ONE_EPOCH])
    outcome = train(cfg)
    from mlflow import MlflowClient

    alone = MlflowClient(other).get_run(outcome.run_id)
    assert alone.data.params == cell.data.params
    ids = {"mlflow.parentRunId", SWEEP_TAG, JOB_TAG, HEARTBEAT_TAG, CHECKPOINT_TAG,
           STARTUP_TAG, "mlflow.runName", "mlflow.user", "mlflow.source.name", "mlflow.source.type"}
    same = {k: v for k, v in cell.data.tags.items() if k not in ids}
    assert {k: v for k, v in alone.data.tags.items() if k not in ids} == same
    assert "mlflow.parentRunId" not in alone.data.tags
    exp = MlflowClient(other).get_experiment_by_name("test")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"


def test_slurm_sweep_with_an_invalid_cell_submits_no_job(store, slurm_cluster):
    """Every launcher checks every cell before fan-out (:func:`dnrt.launching.sweep.prepare_sweep`);
    here on SLURM, where a late failure would cost a queue wait per job."""
    proc = store.launch("-m", "hydra/launcher=slurm", "resources=debug_cpu", "act=relu,gelu,raa",
                             "optim.lr=1e-3,-1", *ONE_EPOCH)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "3 of 6 sweep cells cannot run; nothing was submitted" in proc.stderr
    assert proc.stderr.count("optim.lr=-1: must be > 0") == 3
    assert not list(store.root.glob("multirun/**/.submitit"))  # no job was submitted
    assert store.runs(children_only=False) == []  # no run, no sweep parent run
    assert not list(store.root.glob("multirun/**/" + CONTEXT_FILE))
    plan = store.launch("-m", "hydra/launcher=slurm", "resources=debug_cpu", "act=relu,gelu", *ONE_EPOCH, "--plan")
    assert plan.returncode == 0 and "totals: new 2" in plan.stdout, plan.stderr[-2000:]
    assert not list(store.root.glob("multirun/**/.submitit"))


@pytest.mark.slow
def test_every_model_act_and_regularizer_option_passes_the_checks(tmp_path):
    """Every option of the model/act/regularizer groups composes into a config the checks accept, a
    model with a data set of its task (a graph model with a DGraphFin-layout file)."""
    from dnrt.testing import write_graph

    write_graph(tmp_path / "dgraphfin" / "dgraphfin.npz", n=60)
    graph_data = ["dataset=dgraphfin", f"data_dir={tmp_path}", *(o for o in FAST if not o.startswith("dataset."))]
    for group in ("act", "regularizer", "model"):
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            cfg = compose_cfg([f"{group}={option}", *FAST])
            if model_task(str(cfg.model.name)) == "node":
                cfg = compose_cfg([*graph_data, f"{group}={option}"])
            assert check_run(cfg, fit=False).task == model_task(str(cfg.model.name))


# Signatures as the release before versioned signatures computed them (commit 8ff2221). A new key
# without a neutral declaration, or a changed default, changes them and orphans every user's runs.
V1_SIGNATURES = [
    ("", "a038d200a8110aee"),
    ("regularizer=arr", "3b8a19a46f16d0e0"),
    ("model=vit_tiny act=raa regularizer=arr", "b7f9a1e3eb7faf61"),
    ("act=raa_gelu_simple", "50e1444374a860a9"),
    ("dataset=cifar100 regularizer=arr model=resnet18", "d554cb09b6816912"),
    ("model=vgg11 act=relu dataset=cifar10", "181689788d822439"),
    ("dataset=cifar10_lt dataset.imbalance_ratio=50", "1fc6775afa948bf3"),
    ("optim=sgd sched=step", "0c04f8ea7100f3eb"),
]


@pytest.mark.parametrize("overrides,signature", V1_SIGNATURES)
def test_signatures_of_earlier_runs_are_unchanged(overrides, signature):
    assert config_hash(compose_cfg(overrides.split())) == signature


def test_a_revised_value_re_signs_only_its_runs():
    for model, revised in (("deit_tiny", True), ("pvt_tiny", True), ("tnt_small", True), ("vit_tiny", False)):
        cfg = compose_cfg([f"model={model}"])
        plain = cfg.copy()
        plain.signature.revised = {}
        assert (config_hash(cfg) != config_hash(plain)) == revised, model


def test_the_device_paper_recipe_is_revised_and_the_pil_one_is_not():
    for backend, revised in (("device", True), ("pil", False)):
        cfg = compose_cfg(["dataset.augment=paper", f"dataset.aug_backend={backend}"])
        plain = cfg.copy()
        plain.signature.revised = {}
        assert (config_hash(cfg) != config_hash(plain)) == revised, backend
