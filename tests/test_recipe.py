"""The authors' training recipe: schedule, optimizer, mixed precision, presets that share runs, and
the fidelity report."""

from __future__ import annotations

import math
import warnings

import pytest
import timm
import torch
from hydra.utils import instantiate
from timm.scheduler import CosineLRScheduler
from torch import nn

from dnrt.config import ConfigError, config_hash, validate
from dnrt.engine.amp import amp_dtype, grad_scaler
from dnrt.engine.distributed import DistInfo
from dnrt.engine.loops import StepConfig, backward_and_step, train_one_epoch
from dnrt.engine.trainer import Trainer
from dnrt.factory import build_components
from dnrt.preflight import check_run
from tests.harness.config import FAST, compose_cfg
from tests.harness.training import lrs_of_the_loop

STEPS = 196  # CIFAR: 50,000 images in batches of 256, the last one kept


def _paper_scheduler(steps_per_epoch: int, epochs: int = 300, batch_size: int = 256, model: nn.Module | None = None):
    """Optimizer and schedule from ``optim=paper sched=paper``, built by the calls build.py makes."""
    cfg = compose_cfg(["optim=paper", "sched=paper", f"trainer.epochs={epochs}", f"trainer.batch_size={batch_size}"])
    optimizer = instantiate(cfg.optim, model_or_params=model if model is not None else nn.Linear(3, 2))
    scheduler, _ = instantiate(cfg.sched, optimizer=optimizer, num_epochs=epochs, updates_per_epoch=steps_per_epoch,
                               step_on_epochs=False)
    return optimizer, scheduler


def _authors_lr(t: int, peak: float, warmup: int, t_initial: int, start: float = 1e-6, floor: float = 1e-5) -> float:
    """The authors' schedule written out: linear warmup, then cosine over t_initial read at the absolute step."""
    if t < warmup:
        return start + t * (peak - start) / warmup
    if t >= t_initial:
        return floor
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * t / t_initial))


def test_paper_schedule_equals_the_authors_timm_scheduler():
    optimizer, scheduler = _paper_scheduler(STEPS)
    peak = 5e-4 * 256 / 512
    reference_opt = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=peak)
    reference = CosineLRScheduler(reference_opt, t_initial=280 * STEPS, warmup_t=20 * STEPS, warmup_lr_init=1e-6,
                                  lr_min=1e-5, t_in_epochs=False)
    last = 300 * STEPS - 1
    for step in (0, 1, 20 * STEPS, 200 * STEPS, 280 * STEPS, last):
        if step:  # the loop calls step_update(k) after step k-1, so step k runs at the rate for k
            scheduler.step_update(num_updates=step)
            reference.step_update(num_updates=step)
        lr = optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(reference_opt.param_groups[0]["lr"], abs=1e-12), step
        assert lr == pytest.approx(_authors_lr(step, peak, 20 * STEPS, 280 * STEPS), abs=1e-12), step
    scheduler.step_update(num_updates=200 * STEPS)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5.52e-5, abs=5e-8)  # the authors' epoch-200 rate


def test_training_loop_runs_step_k_at_the_schedules_rate_for_k():
    """Drive the real epoch loop (2 epochs x 3 steps) and record the lr each optimizer step used."""
    model = nn.Linear(3, 2)
    optimizer, scheduler = _paper_scheduler(steps_per_epoch=3, epochs=25, model=model)
    loader = _Loader([(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)])
    used = lrs_of_the_loop(model, optimizer, scheduler, loader, 2)
    peak = 5e-4 * 256 / 512
    assert used == pytest.approx([_authors_lr(k, peak, 20 * 3, 5 * 3) for k in range(6)], abs=1e-15)


class _Loader(list):
    def set_epoch(self, epoch: int) -> None:
        pass


def test_paper_optimizer_decays_every_parameter_and_scales_lr_with_the_batch():
    cfg = compose_cfg(["optim=paper", "model=vit_tiny", "act=raa", "trainer.batch_size=128"])
    model = instantiate(cfg.model, num_classes=10, img_size=32, in_chans=3, act="raa").model
    optimizer = instantiate(cfg.optim, model_or_params=model)
    in_groups = [(p, g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]]
    assert len(optimizer.param_groups) == 1
    assert {id(p) for p, _ in in_groups} == {id(p) for p in model.parameters()}
    assert all(wd == 0.05 for _, wd in in_groups)
    one_d = [n for n, p in model.named_parameters() if p.ndim <= 1]
    assert any("pos_embed" in n or "cls_token" in n for n, _ in model.named_parameters())
    assert len(one_d) > 50  # biases, norms and RAA's weights and biases: all of them decayed above
    for batch in (128, 256, 512, 1024):
        composed = compose_cfg(["optim=paper", f"trainer.batch_size={batch}"])
        built = instantiate(composed.optim, model_or_params=nn.Linear(2, 2))
        assert built.param_groups[0]["lr"] == pytest.approx(5e-4 * batch / 512, rel=1e-12)
    assert compose_cfg(["optim=paper", "trainer.batch_size=128"]).optim.lr == pytest.approx(1.25e-4)
    with pytest.raises(Exception, match="base_lr"):
        validate(compose_cfg(["optim=paper", "optim.base_lr=-1"]))


def test_default_adamw_still_exempts_one_dimensional_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    optimizer = instantiate(compose_cfg([]).optim, model_or_params=model)
    no_decay = [p for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert len(no_decay) == 3  # the linear's bias, the norm's weight and bias


# (paper_ablation overrides, the same cell in the Table 1/2 preset)
SHARED_CELLS = [
    (["model=resnet18", "act=relu", "regularizer=none"], "paper_cnn", ["model=resnet18", "mechanism=relu"]),
    (["model=resnet18", "act=gelu", "regularizer=none"], "paper_cnn", ["model=resnet18", "mechanism=gelu"]),
    (["model=resnet18", "act=raa", "regularizer=arr"], "paper_cnn", ["model=resnet18", "mechanism=dnrt"]),
    (["model=vit_tiny", "act=gelu", "regularizer=none"], "paper_vit", ["model=vit_tiny", "mechanism=gelu"]),
    (["model=vit_tiny", "act=raa", "regularizer=arr"], "paper_vit", ["model=vit_tiny", "mechanism=dnrt"]),
]


@pytest.mark.parametrize("ablation,preset,cell", SHARED_CELLS)
def test_ablation_cells_are_the_same_runs_as_tables_1_and_2(ablation, preset, cell):
    a = compose_cfg(["experiment=paper_ablation", *ablation])
    b = compose_cfg([f"experiment={preset}", "dataset=cifar100", *cell])
    assert config_hash(a) == config_hash(b)
    assert a.seed == 42 and a.model.drop_path == (0.1 if a.model.name == "vit_tiny" else 0.0)


@pytest.mark.parametrize("preset", ["paper_vit", "paper_cnn", "paper_ablation", "paper_longtail", "paper_imagenet1k"])
def test_presets_use_the_authors_seed_amp_and_per_model_drop_path(preset):
    for model, drop_path in (("vit_tiny", 0.1), ("tnt_small", 0.1), ("resnet18", 0.0), ("mobilenet", 0.0)):
        cfg = compose_cfg([f"experiment={preset}", f"model={model}"])
        assert (cfg.seed, cfg.trainer.amp, cfg.model.drop_path) == (42, "fp16", drop_path)
    assert compose_cfg([f"experiment={preset}", "seed=3"]).seed == 3


def _step_updates_weights(dtype: torch.dtype, scaler: torch.amp.GradScaler | None) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 3))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    sc = StepConfig(grad_clip=1.0, amp_dtype=dtype, progress=False)
    train_one_epoch(model, _Loader([(x, y)]), optimizer, _NoSchedule(), None, sc, 0, torch.device("cpu"),
                    scaler=scaler)
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())


class _NoSchedule:
    def step_update(self, num_updates: int) -> None:
        pass


def _cpu_fp16_autocast() -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast("cpu", dtype=torch.float16):
            out = torch.ones(2, 2) @ torch.ones(2, 2)
    return out.dtype == torch.float16 and not caught


def test_bf16_training_step_updates_weights():
    _step_updates_weights(torch.bfloat16, None)


@pytest.mark.skipif(not _cpu_fp16_autocast(), reason="this torch has no float16 autocast on the CPU")
def test_fp16_training_step_with_grad_scaler_updates_weights():
    scaler = grad_scaler(torch.float16, torch.device("cpu"))
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    _step_updates_weights(torch.float16, scaler)
    assert scaler.get_scale() == 65536.0  # a finite step keeps the initial scale


def test_grad_clip_sees_unscaled_gradients():
    """SGD with lr 1 and clip 1: the step moves the weights by exactly norm 1, not 1 / loss scale."""
    model = nn.Linear(4, 1, bias=False)
    nn.init.constant_(model.weight, 0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = (model(torch.full((1, 4), 10.0)) - 100.0).pow(2).sum()  # gradient norm 4000
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    backward_and_step(loss, model, optimizer, grad_clip=1.0, scaler=scaler)
    assert model.weight.norm().item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("value", ["fp32", "float16", 3])
def test_unknown_amp_values_are_refused_with_the_choices(value):
    with pytest.raises(ConfigError, match="trainer.amp") as err:
        amp_dtype(value, torch.device("cpu"))
    assert "fp16" in str(err.value) and "bf16" in str(err.value)
    with pytest.raises(ConfigError, match="trainer.amp"):
        validate(compose_cfg([f"trainer.amp={value}"]))


def test_amp_settings_keep_their_meaning():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None and amp_dtype(False, cpu) is None
    assert amp_dtype("auto", cuda) is torch.bfloat16  # no CUDA needed: the dtype choice only
    assert amp_dtype(True, cpu) is torch.bfloat16 and amp_dtype("bf16", cpu) is torch.bfloat16
    assert grad_scaler(torch.bfloat16, cpu) is None and grad_scaler(None, cpu) is None


@pytest.mark.skipif(not _cpu_fp16_autocast(), reason="this torch has no float16 autocast on the CPU")
def test_fp16_run_checkpoints_its_grad_scaler(tmp_path):
    cfg = compose_cfg(["trainer.amp=fp16", *FAST])
    with pytest.warns(UserWarning, match="fp16 on the CPU"):
        comp = build_components(check_run(cfg, fit=False), DistInfo())
    assert comp.amp_dtype is torch.float16 and comp.scaler is not None
    comp.scaler.scale(torch.ones(()))  # the scaler sets itself up on first use
    comp.scaler.update(1234.0)
    state = Trainer(cfg, comp, DistInfo(), tmp_path / "last.pt", "hash").state_dict()
    with pytest.warns(UserWarning):
        fresh = build_components(check_run(cfg, fit=False), DistInfo())
    Trainer(cfg, fresh, DistInfo(), tmp_path / "last.pt", "hash").load_state_dict(state)
    assert fresh.scaler.get_scale() == 1234.0


def test_fidelity_report_prints_the_authors_figures(capsys):
    from analysis import fidelity

    assert fidelity.main(["--models", "vit_tiny,resnet18", "--sizes", "32", "--presets", "paper_ablation"]) == 0
    out = capsys.readouterr().out
    # timm's ViT-Tiny with the paper's 4-px patches at 32 px, 100 classes; then the authors' figure
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, num_classes=100)
    assert f"| `vit_tiny` | 32 | {sum(p.numel() for p in vit.parameters()):,} | " in out
    assert "| 5,380,132 |" in out and "| `resnet18` | 32 |" in out
    assert "1e-06 / 0.00025 / 5.52e-05 / 1e-05 / 1e-05" in out  # epoch 20 opens at lr(3919): the authors' order
    assert "vit_tiny 0.1, resnet18 0" in out and "100% of tensors" in out


def test_fidelity_macs_count_a_linear_layer_exactly():
    from dnrt.models.macs import count_macs

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 4 * 4, 7)

        def forward(self, x):
            return self.fc(x.flatten(1))

    assert count_macs(Flat(), img_size=4)["total"] == 3 * 4 * 4 * 7
