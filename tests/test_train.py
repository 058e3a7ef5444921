"""One-epoch training runs, exact resume, eval-only, and failures, against a real sqlite MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import dnrt.engine.trainer as trainer_module
from dnrt.config import ConfigError
from dnrt.engine.checkpoint import load_checkpoint
from dnrt.tracking_schema import (
    CHECKPOINT_TAG,
    DETAIL_TAG,
    DEVICE_TAG,
    GIT_TAG,
    HASH_TAG,
    JOB_TAG,
    STARTUP,
    STARTUP_COLD,
    STARTUP_TAG,
    STARTUP_WARM,
    THREADS_TAG,
)
from dnrt.train import checkpoint_path, train
from tests.harness.config import FAST, SMALL, TINY_RESNET, compose_cfg
from tests.test_sweeps import PREEMPTED, train_as_launched, uninterrupted_reference

# Real trainings through train(): not in `make test-fast`.
pytestmark = pytest.mark.slow

EPOCH_METRICS = ["train/loss", "train/loss_ce", "train/loss_arr", "train/acc1", "val/loss", "val/acc1", "val/acc5",
                 "lr", "epoch_time_s", "train/throughput_img_s"]
SCHEMA_PARAMS = ["model.name", "act.name", "regularizer.name", "regularizer.weight", "dataset.name", "seed", "optim.lr"]
SCHEMA_TAGS = [HASH_TAG, GIT_TAG, DETAIL_TAG]


def assert_run_schema(client, run, model: str, act: str, reg: str) -> None:
    """``run``, a FINISHED one-epoch run of ``model``/``act``/``reg`` on digits, carries the MLflow schema
    (docs/analysis.md): its name, params, tags, every per-epoch metric once, final and best
    top-1 equal to the logged epoch's, the ARR loss where ARR is on, and its config."""
    seed = run.data.params["seed"]
    assert run.info.status == "FINISHED" and run.info.run_name == f"{model}-{act}-{reg}-digits-s{seed}"
    for key in SCHEMA_PARAMS:
        assert key in run.data.params
    assert (run.data.params["model.name"], run.data.params["act.name"], run.data.params["regularizer.name"]) == (
        model, act, reg)
    for key in SCHEMA_TAGS:
        assert run.data.tags.get(key)
    assert run.data.tags[DEVICE_TAG] == "cpu" and int(run.data.tags[THREADS_TAG]) >= 1
    for key in EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1], key
    (val,) = client.get_metric_history(run.info.run_id, "val/acc1")
    assert run.data.metrics["final/val_acc1"] == run.data.metrics["best/val_acc1"] == val.value
    if reg == "arr":
        assert run.data.metrics["train/loss_arr"] > 0 and "val/loss_arr" in run.data.metrics
    else:
        assert run.data.metrics["train/loss_arr"] == 0
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}


# ReLU here, through train() in this process; every model x {gelu, raa} x {none, arr} is checked on the
# session's shared sweep store, trained through launch.py -m (tests/test_analysis.py)
@pytest.mark.parametrize("model,act,reg", [("resnet18", "relu", "none"), ("vit_tiny", "relu", "arr")])
def test_one_epoch_run_has_the_schema(store, model, act, reg):
    tiny = [o for o in FAST if not o.startswith("dataset.fraction=")] + ["dataset.fraction=0.1"]  # the schema only
    cfg = compose_cfg([f"model={model}", f"act={act}", f"regularizer={reg}", "trainer.epochs=1", *tiny,
                       *store.overrides()])
    outcome = train(cfg)
    assert outcome.status == "finished" and 0 <= outcome.val_acc1 <= 100
    (run,) = store.runs()
    assert_run_schema(store.client, run, model, act, reg)
    assert run.data.metrics["final/val_acc1"] == pytest.approx(outcome.val_acc1)


def _final_state(store, experiment, cfg):
    from dnrt.config import config_hash

    return load_checkpoint(checkpoint_path(cfg, config_hash(cfg)))


def test_resume_is_identical_to_an_uninterrupted_run(store):
    """Stopped after epoch 1 (``trainer.stop_after``), the same config resumes the same run and ends with
    the weights, ARR memory and logged curves of the session's uninterrupted reference run."""
    cut = compose_cfg([*PREEMPTED, *store.overrides("cut"), "trainer.stop_after=1"])
    first = train_as_launched(cut)
    assert first.status == "stopped"
    (killed,) = store.runs("cut")
    assert killed.info.status == "KILLED"
    resumed = train_as_launched(compose_cfg([*PREEMPTED, *store.overrides("cut")]))  # the same command again
    assert resumed.status == "resumed" and resumed.run_id == first.run_id

    a, b = uninterrupted_reference(store), _final_state(store, "cut", cut)
    assert a["epoch"] == b["epoch"] == 2
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for key, tensor in a["arr"].items():
        assert torch.equal(tensor, b["arr"][key]), key
    (run_b,) = store.runs("cut")
    assert run_b.info.status == "FINISHED"
    for key in ["train/loss", "val/acc1", "val/loss_arr", "lr"]:
        ha = [(h["epoch"], h[key]) for h in a["history"]]
        hb = [(m.step, m.value) for m in store.client.get_metric_history(run_b.info.run_id, key)]
        assert [s for s, _ in hb] == [1, 2], f"{key} logged {hb}"
        assert ha == hb, key


def test_second_launch_of_a_finished_config_is_skipped(store):
    cfg = compose_cfg(["trainer.epochs=1", *SMALL, *store.overrides()])
    first = train(cfg)
    again = train(cfg)
    assert again.status == "skipped" and again.run_id == first.run_id
    assert again.val_acc1 == pytest.approx(first.val_acc1)
    assert len(store.runs()) == 1
    forced = train(compose_cfg(["trainer.epochs=1", *SMALL, *store.overrides(), "force=true"]))
    assert forced.status == "finished" and len(store.runs()) == 2


def test_eval_only_reports_the_last_epoch_and_arr_loss(store, capsys):
    cfg = compose_cfg(["act=raa", "regularizer=arr", "trainer.epochs=2", *SMALL, *store.overrides()])
    train(cfg)
    (run,) = store.runs()
    ckpt = checkpoint_path(cfg, run.data.tags[HASH_TAG])
    capsys.readouterr()
    out = train(compose_cfg([f"trainer.eval_only={ckpt}", *store.overrides()]))
    assert out.val_acc1 == pytest.approx(run.data.metrics["val/acc1"], abs=1e-9)
    printed = capsys.readouterr().out
    import json

    metrics = json.loads(printed.strip().splitlines()[-1])
    assert metrics["val/loss_arr"] == pytest.approx(run.data.metrics["val/loss_arr"], rel=1e-6)
    assert metrics["val/loss_arr"] > 0


def test_checkpoint_loads_with_weights_only_and_holds_everything(store):
    cfg = compose_cfg(["regularizer=arr", "trainer.epochs=1", *SMALL, *store.overrides()])
    outcome = train(cfg)
    (run,) = store.runs()
    ckpt = load_checkpoint(run.data.tags[CHECKPOINT_TAG])  # torch.load(weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "arr", "epoch", "rng", "run_id"):
        assert key in ckpt
    assert ckpt["run_id"] == outcome.run_id and ckpt["epoch"] == 1


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(store, monkeypatch):
    real = trainer_module.train_one_epoch

    def poisoned(model, *args, **kwargs):
        if kwargs.get("epoch", args[5] if len(args) > 5 else 0) == 1:  # second epoch
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_one_epoch", poisoned)
    cfg = compose_cfg(["trainer.epochs=2", *SMALL, *store.overrides()])
    with pytest.raises(FloatingPointError, match="loss became nan"):
        train(cfg)
    (run,) = store.runs()
    assert run.info.status == "FAILED"
    assert "NonFiniteLoss" in run.data.tags[DETAIL_TAG]
    assert "error.txt" in {a.path for a in store.client.list_artifacts(run.info.run_id)}
    ckpt = load_checkpoint(run.data.tags[CHECKPOINT_TAG])
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())


def test_model_dataset_mismatch_fails_before_training(store):
    cfg = compose_cfg(["model=vit_tiny", "dataset.img_size=9", *FAST, *store.overrides()])
    with pytest.raises(ConfigError, match=r"^model\.name=vit_tiny: does not fit dataset=digits \(9 px"):
        train(cfg)
    assert store.runs() == []  # refused before any run exists


def test_allocator_keeps_freed_memory_once_and_can_be_switched_off():
    code = "from dnrt.engine.allocator import keep_freed_memory as k; print(k(), k())"
    for env, expected in (({}, "True True"), ({"DNRT_MALLOC_KEEP": "0"}, "False False")):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True)
        assert out.stdout.split() == expected.split(), out.stderr


def _first_epoch_loss(store, experiment: str, overrides: list[str]) -> tuple[float, dict]:
    cfg = compose_cfg([*overrides, *store.overrides(experiment)])
    assert train(cfg).status == "finished"
    (run,) = store.runs(experiment)
    return run.data.metrics["train/loss"], _final_state(store, experiment, cfg)["model"]


def test_training_under_torch_compile_on_the_cpu_matches_eager(store):
    import torch._dynamo
    import torch._inductor.config

    # timm's test_resnet: a complete ResNet small enough to compile in seconds
    base = [*TINY_RESNET, "act=gelu", "trainer.epochs=1", *FAST, "dataset.fraction=0.05"]
    eager_loss, eager = _first_epoch_loss(store, "eager", base)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    # Scalar C++ kernels: what is checked here is dnrt's compiled training path, not inductor's SIMD
    # code. `/usr/bin/time pytest -k compile` on a cold inductor cache, 2026-12-06: 53 s of CPU, and
    # 84 s with inductor's vectorised kernels (delete the patch line to repeat).
    with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
        compiled_loss, compiled = _first_epoch_loss(store, "compiled", [*base, "trainer.compile=true"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the step really ran compiled
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
    for key, tensor in eager.items():  # a few steps of float reordering apart, no more
        assert torch.allclose(compiled[key], tensor, rtol=1e-3, atol=1e-4), key


def test_training_under_bf16_autocast_on_the_cpu(store):
    base = ["model=vit_tiny", "act=raa", "regularizer=arr", "trainer.epochs=1", *FAST, "dataset.fraction=0.05"]
    fp32_loss, _ = _first_epoch_loss(store, "fp32", base)
    dtypes = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: dtypes.add(out.dtype) if isinstance(module, torch.nn.Linear) else None)
    try:
        bf16_loss, state = _first_epoch_loss(store, "bf16", [*base, "trainer.amp=true"])
    finally:
        hook.remove()
    assert torch.bfloat16 in dtypes  # the Linear layers ran in bf16
    assert bf16_loss != fp32_loss and bf16_loss == pytest.approx(fp32_loss, rel=5e-2)
    assert all(torch.isfinite(t).all() and t.dtype == torch.float32 for t in state.values() if t.is_floating_point())


def test_the_job_comes_as_an_argument_and_the_entry_point_reads_it_from_the_scheduler(store, monkeypatch):
    """``train`` tags the run with the job it is given (id, clock) and reads no SLURM variable itself;
    the entry point (launch.py) reads the scheduler's id from the environment and passes it on."""
    import socket
    import time

    from dnrt.types import Job

    base = ["trainer.epochs=1", *TINY_RESNET, *FAST, *store.overrides()]
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    started = time.time() - 100.0
    train(compose_cfg([*base, "seed=1"]), job=Job("4242_7", started=started, warm=True))
    train(compose_cfg([*base, "seed=2"]))
    proc = store.launch(*base, "seed=3", env=store.env(SLURM_JOB_ID="888"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {int(r.data.params["seed"]): r for r in store.runs()}
    tags = {seed: (r.data.tags[JOB_TAG], r.data.tags[STARTUP_TAG]) for seed, r in runs.items()}
    assert tags[1] == ("4242_7", STARTUP_WARM)
    assert tags[2] == (f"{socket.gethostname()}:{os.getpid()}", STARTUP_COLD)  # not $SLURM_JOB_ID
    assert tags[3][0] == "888"
    assert runs[1].data.metrics[STARTUP] >= 100.0  # measured from the job's clock, not the process's
