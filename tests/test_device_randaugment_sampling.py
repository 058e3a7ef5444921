"""The device RandAugment draws against timm's own sampling process, over 100,000 images each.

timm's process is run for real: its ``RandAugment`` (from ``rand_augment_transform``) with every
op's image function replaced by a recorder, so ``np.random.choice``, the probability check, the
Gaussian magnitude and the random sign are timm's code. Tests reject at p < 0.001 (stated once,
``ALPHA``); each is shown to reject the process with the probability 0.5 -> 0.6 or the std
0.5 -> 1.0.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import torch
from scipy import stats
from timm.data import auto_augment as aa

from dnrt.data.device_randaugment import OPS, SIGNED, sample_policy

DRAWS = 100_000
ALPHA = 1e-3


@functools.lru_cache(maxsize=1)
def timm_draws(n: int = DRAWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Run timm's RandAugment sampling ``n`` times: op pair [n, 2], applied [n, 2], and for the
    applied draws their magnitude and (signed ops) whether the argument was negated."""
    ra = aa.rand_augment_transform("rand-m9-mstd0.5-inc1", {"img_mean": (124, 116, 104)})
    assert [op.name for op in ra.ops] == list(OPS)
    record: list = []
    for k, op in enumerate(ra.ops):
        def level(m, hparams, _fn=op.level_fn, _k=k):
            record.append((_k, m))
            return _fn(m, hparams) if _fn else ()

        def apply(img, *args, _k=k, **_):
            record.append(("args", args))
            return img

        op.level_fn, op.aug_fn = level, apply
    random.seed(seed)
    np.random.seed(seed)
    ops, applied, mags, negs = np.zeros((n, 2), int), np.zeros((n, 2), bool), [], []
    name_index = {op: i for i, op in enumerate(ra.ops)}
    for i in range(n):
        chosen = np.random.choice(ra.ops, 2, replace=True)
        for j, op in enumerate(chosen):
            ops[i, j] = name_index[op]
            record.clear()
            op(None)
            if record:
                applied[i, j] = True
                k, m = record[0]
                mags.append(m)
                if OPS[k] in SIGNED:
                    arg = record[1][1][0]  # enhance factors are 1 -/+ level, the others -/+ level
                    negs.append(arg < 1.0 if OPS[k].endswith("Increasing") else arg < 0)
    return {"ops": ops, "applied": applied, "magnitude": np.asarray(mags), "negate": np.asarray(negs)}


def device_draws(prob: float = 0.5, std: float = 0.5, n: int = DRAWS, seed: int = 1) -> dict[str, np.ndarray]:
    d = sample_policy(n, torch.Generator().manual_seed(seed), "cpu", prob=prob, std=std)
    applied = d.applied.numpy()
    signed = torch.tensor([OPS[k] in SIGNED for k in range(len(OPS))])[d.op].numpy() & applied
    return {"ops": d.op.numpy(), "applied": applied, "magnitude": d.magnitude.numpy()[applied],
            "negate": d.negate.numpy()[signed]}


def homogeneity_p(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Chi-square test that two samples of categories 0..k-1 come from one distribution."""
    table = np.stack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
    return stats.chi2_contingency(table[:, table.sum(0) > 0])[1]


def pair_p(x: dict, y: dict) -> float:
    k = len(OPS)
    return homogeneity_p(x["ops"][:, 0] * k + x["ops"][:, 1], y["ops"][:, 0] * k + y["ops"][:, 1], k * k)


def applied_p(x: dict, y: dict) -> float:
    code = lambda d: d["applied"][:, 0].astype(int) * 2 + d["applied"][:, 1]  # noqa: E731
    return homogeneity_p(code(x), code(y), 4)


def magnitude_p(x: dict, y: dict) -> float:
    return stats.ks_2samp(x["magnitude"], y["magnitude"]).pvalue


def sign_p(x: dict, y: dict) -> float:
    return homogeneity_p(x["negate"].astype(int), y["negate"].astype(int), 2)


TESTS = {"op pairs": pair_p, "applied": applied_p, "magnitude": magnitude_p, "sign": sign_p}


@pytest.mark.parametrize("name", list(TESTS))
def test_device_sampling_matches_timms_process(name):
    timm, ours = timm_draws(), device_draws()
    assert len(timm["ops"]) == len(ours["ops"]) == DRAWS
    assert TESTS[name](timm, ours) > ALPHA, name


def test_magnitude_matches_the_clipped_gaussian_formula():
    """Independent of both samplers: N(9, 0.5) clipped to [0, 10] is the normal below 10 (KS against
    its CDF conditioned on < 10) and an atom of P(N > 10) at 10 (binomial test)."""
    m = device_draws()["magnitude"]
    below = m[m < 10]
    top = stats.norm.cdf(10, 9, 0.5)
    assert stats.kstest(below, lambda t: stats.norm.cdf(t, 9, 0.5) / top).pvalue > ALPHA
    assert stats.binomtest(int((m == 10).sum()), len(m), stats.norm.sf(10, 9, 0.5)).pvalue > ALPHA


@pytest.mark.parametrize(("changed", "rejects"), [({"prob": 0.6}, "applied"), ({"std": 1.0}, "magnitude")])
def test_the_tests_reject_a_changed_process(changed, rejects):
    assert TESTS[rejects](timm_draws(), device_draws(**changed)) < ALPHA, changed
