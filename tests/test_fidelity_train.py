"""The paper presets' training side against the authors' code (docs/fidelity.md): the learning rate
of each step, ARR over taps of unequal widths and ResNet-18's initialisation, each checked against a
reference written here."""

from __future__ import annotations

import pytest
import torch
from timm.scheduler import CosineLRScheduler
from torch import nn

from dnrt.config import signed_params
from dnrt.engine.loops import StepConfig, make_mixup, train_one_epoch
from dnrt.factory import build_components, build_model, build_optimizer, build_scheduler
from dnrt.nn import ARR
from dnrt.preflight import check_run
from dnrt.types import DistInfo
from tests.harness.config import FAST, compose_cfg
from tests.harness.training import lrs_of_the_loop

CIFAR_STEPS = 196  # 50,000 images in batches of 256, the last one kept
CHECKED = (0, 1, 3919, 3920, 3921)  # the warmup ends at step 20 x 196 = 3920


def _authors_lrs(cfg, steps: int, n: int) -> list[float]:
    """The authors' toolkit: timm's CosineLRScheduler as their build_scheduler makes it, and their
    loop: train step it at the current rate, then ``step_update(epoch * n_steps + batch_idx)``."""
    opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=5e-4 * cfg.trainer.batch_size / 512)
    warmup = 20 * steps
    sched = CosineLRScheduler(opt, t_initial=cfg.trainer.epochs * steps - warmup, lr_min=1e-5, warmup_lr_init=1e-6,
                              warmup_t=warmup, cycle_limit=1, t_in_epochs=False)
    lrs = []
    for it in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step_update(it)
    return lrs


def _trained_lrs(cfg, steps: int, n: int) -> list[float]:
    """The rate of each optimizer step of dnrt's own loop, with the preset's optimizer and schedule."""
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, steps)
    loader = [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))] * steps
    return lrs_of_the_loop(model, optimizer, scheduler, loader, -(-n // steps))[:n]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper_vit"])
def test_preset_lr_of_every_step_is_the_authors_loop_order(preset):
    cfg = compose_cfg([f"experiment={preset}", "trainer.amp=false"])
    n = CHECKED[-1] + 1
    authors, ours = _authors_lrs(cfg, CIFAR_STEPS, n), _trained_lrs(cfg, CIFAR_STEPS, n)
    assert [ours[i] for i in CHECKED] == pytest.approx([authors[i] for i in CHECKED], rel=1e-12)
    assert ours == pytest.approx(authors, rel=1e-12)
    assert authors[1] == authors[0] == 1e-6  # their step 1 still trains at the warmup start
    # without the preset's lag, step k trains at lr(k): one step ahead of the authors
    plain = _trained_lrs(compose_cfg([f"experiment={preset}", "sched.lr_lag=0"]), CIFAR_STEPS, n)
    assert plain[:-1] == pytest.approx(authors[1:], rel=1e-12) and plain[1] != authors[1]


TAP_WIDTHS = (4, 4, 4, 8, 2, 2)  # widths with 3, 1 and 2 taps: per-width and per-tap means differ


class SliceTaps(nn.Module):
    """Tap i sees its own column slice of the input: the responses are the input."""

    def __init__(self):
        super().__init__()
        self.taps = nn.ModuleList(nn.Identity() for _ in TAP_WIDTHS)

    def forward(self, x):
        return [tap(part) for tap, part in zip(self.taps, x.split(TAP_WIDTHS, 1))]


def _authors_arr(batches, num_classes: int, momentum: float) -> list[float]:
    """The authors' module, one sample at a time: per tap and class a running mean (the first
    response initialises it), responses and means collected per width, one L1 mean per width over
    the width's concatenated taps, the widths averaged."""
    means = [[None] * num_classes for _ in TAP_WIDTHS]
    out = []
    for x, y in batches:
        rsps: dict[int, list[torch.Tensor]] = {}
        mean: dict[int, list[torch.Tensor]] = {}
        for tap, (d, r_tap) in enumerate(zip(TAP_WIDTHS, x.double().split(TAP_WIDTHS, 1))):
            targets = []
            for r, k in zip(r_tap, y.tolist()):
                prev = means[tap][k]
                means[tap][k] = r.clone() if prev is None else (1 - momentum) * prev + momentum * r
                targets.append(means[tap][k])
            rsps.setdefault(d, []).append(r_tap)
            mean.setdefault(d, []).append(torch.stack(targets))
        losses = [nn.functional.l1_loss(torch.cat(rsps[d]), torch.cat(mean[d])) for d in rsps]
        out.append(float(sum(losses) / len(losses)))
    return out


def test_arr_width_average_is_the_authors_module_on_taps_of_unequal_widths():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, sum(TAP_WIDTHS), generator=g), torch.randint(0, 3, (16,), generator=g))
               for _ in range(4)]
    names = [f"taps.{i}" for i in range(len(TAP_WIDTHS))]
    losses = {}
    for average in ("width", "tap"):
        model = SliceTaps()
        arr = ARR(model, 3, names, momentum=0.1, sample=torch.zeros(2, sum(TAP_WIDTHS)), average=average)
        losses[average] = []
        for x, y in batches:
            model(x)
            losses[average].append(float(arr(y)))
    assert losses["width"] == pytest.approx(_authors_arr(batches, 3, 0.1), rel=1e-6)
    assert losses["tap"] != pytest.approx(losses["width"], rel=1e-3)


def test_paper_trainer_sets_the_authors_arr_and_the_defaults_stay_out_of_the_signatures():
    cfg = compose_cfg(["model=vit_tiny", "regularizer=arr", "trainer=paper", "trainer.amp=false", "sched=cosine",
                       *FAST])
    comps = build_components(check_run(cfg, fit=False), DistInfo())
    assert (comps.arr.average, comps.arr.memory) == ("width", "rank")
    for preset in ("paper_vit", "paper_cnn", "paper_ablation", "paper_longtail", "paper_imagenet1k", "paper_fig3"):
        t = compose_cfg([f"experiment={preset}"]).trainer
        assert (t.arr_average, t.lr_scale, t.arr_memory, t.sync_bn) == ("width", "device", "rank", True), preset
    signed = signed_params(compose_cfg(["model=resnet18", "regularizer=arr"]))
    new = {"trainer.arr_average", "trainer.lr_scale", "trainer.arr_memory", "trainer.sync_bn",
           "model.zero_init_last", "sched.lr_lag"}
    assert not new & set(signed)


def test_paper_resnet18_has_the_authors_init_without_zero_initialised_last_norms():
    """torchvision's BasicBlock (the authors' toolkit) initialises every BatchNorm weight to one;
    timm's resnet18 zeroes each block's last one unless told not to."""
    from torchvision.models.resnet import BasicBlock, resnet18

    def last_norms(model):
        return [m.bn2.weight for m in model.modules() if hasattr(m, "bn2")]

    reference = [m.bn2.weight for m in resnet18(num_classes=10).modules() if isinstance(m, BasicBlock)]
    cfg = compose_cfg(["experiment=paper_cnn", "model=resnet18"])
    assert cfg.model.zero_init_last is False
    paper = build_model(cfg, "", num_classes=10, img_size=32, in_chans=3).model
    plain = build_model(compose_cfg(["model=resnet18"]), "", num_classes=10, img_size=32, in_chans=3).model
    assert len(last_norms(paper)) == len(reference) == 8
    assert all(torch.equal(p, r) for p, r in zip(last_norms(paper), reference))
    assert not any(w.detach().any() for w in last_norms(plain))
    assert compose_cfg(["experiment=paper_cnn", "model=vgg11"]).model.zero_init_last is None


def test_mixup_preset_trains_on_timms_mixed_batches_with_soft_target_cross_entropy():
    """QTClassification's ImageNet-1K batch augmentation: timm's Mixup(0.8, 1.0, switch 0.5, batch mode,
    smoothing 0.1); the loss of a step equals the soft-target CE on the batch timm mixes from the
    same numpy state, computed here."""
    import numpy as np
    from timm.data import Mixup

    cfg = compose_cfg(["experiment=paper_imagenet1k_mixup"], return_hydra_config=True)
    t = cfg.trainer
    assert (t.mixup_alpha, t.cutmix_alpha, t.label_smoothing) == (0.8, 1.0, 0.1)
    assert str(cfg.hydra.sweeper.params.model).startswith("vit_tiny")  # the Table 3 sweep, inherited
    assert compose_cfg(["experiment=paper_imagenet1k"]).trainer.mixup_alpha == 0.0
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 5, (8,), generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 5))
    for seed in range(4):  # mixup or cutmix, each drawn
        np.random.seed(seed)
        reference = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                          label_smoothing=0.1, num_classes=5)
        mixed, soft = reference(x.clone(), y.clone())
        with torch.no_grad():
            want = float((-soft * model(mixed).log_softmax(-1)).sum(-1).mean())
        np.random.seed(seed)
        sc = StepConfig(progress=False, mixup=make_mixup(t.mixup_alpha, t.cutmix_alpha, t.label_smoothing, 5))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        sched = CosineLRScheduler(optimizer, t_initial=10, t_in_epochs=False)
        got = train_one_epoch(model, [(x.clone(), y.clone())], optimizer, sched, None, sc, 0, torch.device("cpu"))
        assert got["train/loss_ce"] == pytest.approx(want, rel=1e-6)
