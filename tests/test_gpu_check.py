"""``make gpu-check`` (benchmarks/gpu_check.py): the no-CUDA line, and the check list's table and exit
status on the CPU, where the CUDA-only checks are reported as such and a broken path fails."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check import CHECKS, CUDA_ONLY, FAIL, PASS, Check, Settings, exit_code, run_checks, table


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA line is for machines without CUDA")
def test_without_cuda_it_says_so_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA" in out[0]


def _cpu_settings(tmp: str) -> Settings:
    return Settings(torch.device("cpu"), samples=48, batch=16, workdir=Path(tmp))


def test_cpu_run_of_the_check_list_reports_cuda_only_checks_and_passes():
    by_name = {c.name: c for c in CHECKS}
    chosen = [by_name[n] for n in ("vit_tiny bf16", "device-resident loader", "device paper augmentation",
                                   "nccl all_reduce", "bench gpu section")]
    with tempfile.TemporaryDirectory() as tmp:
        results = run_checks(chosen, _cpu_settings(tmp), log=lambda m: None)
    status = {r.name: r.status for r in results}
    assert status == {"vit_tiny bf16": PASS, "device-resident loader": PASS, "device paper augmentation": PASS,
                      "nccl all_reduce": CUDA_ONLY, "bench gpu section": CUDA_ONLY}
    vit = results[0].figures
    # 48 images in batches of 16 with drop_last: 3 steps, each a finite loss
    assert vit["steps"] == 3 and vit["loss"] == vit["loss"]
    assert results[1].figures["batches"] == 3
    assert exit_code(results) == 0
    text = table(results, "cpu")
    for r in results:
        assert f"| {r.name} | {r.status} |" in text


def test_a_broken_path_fails_the_check_and_the_exit_status():
    """A check whose run cannot be built (a model the registry does not have) is a failure with its
    reason in the table; the other checks still run."""
    broken = Check("vit_tiny bf16", gpu_check.train_check("no_such_model", "bf16"))
    loader = next(c for c in CHECKS if c.name == "device-resident loader")
    with tempfile.TemporaryDirectory() as tmp:
        results = run_checks([broken, loader], _cpu_settings(tmp), log=lambda m: None)
    assert [r.status for r in results] == [FAIL, PASS]
    assert "no_such_model" in results[0].error
    assert exit_code(results) == 1
    assert results[0].error in table(results, "cpu")


def test_unknown_check_name_is_refused(capsys):
    assert gpu_check.main(["--device", "cpu", "--only", "warp drive"]) == 2
    assert "warp drive" in capsys.readouterr().err
