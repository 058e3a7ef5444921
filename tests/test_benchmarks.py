"""The benchmark machinery (benchmarks/), not its timings: no assertion here is about speed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from benchmarks import report, run
from benchmarks.memory import NaiveMemory, measure_memory_speedup
from benchmarks.overhead import job_command
from benchmarks.steps import StepResult
from benchmarks.timing import alternate, paired_ratio
from dnrt.nn import ClassResponseMemory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread (fast and steady on a shared machine); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batches(num_classes: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    yield torch.randn(9, d, generator=g), torch.tensor([2, 2, 2, 2, 0, 2, 0, 2, 2])  # many of one class
    yield torch.randn(64, d, generator=g), torch.randint(0, num_classes - 2, (64,), generator=g)  # some unseen
    yield torch.randn(33, d, generator=g), torch.full((33,), num_classes - 1)  # one class, first seen here
    yield torch.randn(1, d, generator=g), torch.tensor([1])


@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0])
def test_naive_memory_gives_the_module_targets(momentum):
    """The speedup compares equal work: same targets and same stored means, batch after batch."""
    naive, module = NaiveMemory(7, 6, momentum), ClassResponseMemory(7, 6, momentum).train()
    for r, y in _batches(7, 6):
        assert torch.allclose(naive(r, y), module(r, y), atol=1e-5)
        assert torch.allclose(naive.mean, module.mean, atol=1e-5)
        assert naive.count == module.count.tolist()


def test_memory_benchmark_reports_paired_samples():
    out = measure_memory_speedup(batch_size=16, num_features=8, num_classes=5, taps=2, rounds=3)
    assert len(out["samples"]) == 3 and out["ratio"] > 0
    assert len(out["naive_ms_samples"]) == len(out["vectorised_ms_samples"]) == 3


def test_alternate_interleaves_and_rotates():
    calls = []
    times = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert [len(v) for v in times.values()] == [3, 3]
    assert paired_ratio([2.0, 3.0, 9.0], [1.0, 1.0, 1.0]) == {"ratio": 3.0, "samples": [2.0, 3.0, 9.0],
                                                              "min_ratio": 2.0}


def test_targets_pass_fail_and_missing():
    t = report.check_targets({"dnrt_over_gelu_step/vit_tiny": 1.2, "arr_memory_speedup": 12.0,
                              "fixed_overhead_s": 4.0})
    assert t["dnrt_over_gelu_step/vit_tiny"]["pass"] is False
    assert t["arr_memory_speedup"]["pass"] is True
    assert t["fixed_overhead_s"]["pass"] is True
    assert t["device_loader_speedup"]["pass"] is None


def test_overhead_sweep_is_tiny_and_isolated(tmp_path):
    cmd = " ".join(job_command(tmp_path, runs=3))
    for part in ("-m", "hydra/launcher=parallel", "dataset=synthetic", "trainer.epochs=1", "seed=0,1,2",
                 f"trainer.ckpt_root={tmp_path}", f"hydra.sweep.dir={tmp_path}"):
        assert part in cmd


def _fake_steps(model, configs, batch_size, warmup, rounds, calls, compile_backend=None):
    """Stands in for the (slow) real step benchmark: fixed per-config times."""
    slow = {"gelu+none": 1.0, "gelu+arr": 1.1, "raa+none": 1.05, "raa+arr": 1.2}
    names = [f"{a}+{r}" for a, r in configs]
    return StepResult(model, batch_size, {n: [slow[n]] * rounds for n in names}, {n: 2.0 for n in names},
                      {n: 10.0 for n in names})


@pytest.fixture
def smoke(tmp_path, monkeypatch):
    """A smoke run with the step, loader and sweep-job benchmarks replaced by fakes."""
    monkeypatch.setattr(run, "measure_steps", _fake_steps)
    monkeypatch.setattr(run, "measure_loader_speedup", lambda quick: {
        "device_loader_speedup": 6.0, "device_imgs_per_s": 600.0, "dataloader_imgs_per_s": 100.0,
        "rounds": {"device": [600.0], "dataloader": [100.0]}})
    monkeypatch.setattr(run, "measure_overhead", lambda runs: {
        "startup_s": 7.5, "warm_samples": [7.5], "cold_start_s": 12.0, "per_run_mean_s": 9.0, "imports_s": 6.0,
        "sweep_wall_s": 40.0, "store_create_s": 3.0, "job": "fake"})
    monkeypatch.setattr(run, "measure_memory_speedup", lambda rounds: measure_memory_speedup(
        batch_size=8, num_features=4, num_classes=3, taps=2, rounds=rounds))
    assert run.main(["--smoke", "--threads", "2", "--out-dir", str(tmp_path)]) == 0  # not the session's 1
    return json.loads((tmp_path / "latest.json").read_text()), (tmp_path / "latest.md").read_text()


def test_smoke_run_writes_every_ratio_and_target(smoke):
    result, md = smoke
    for key in report.REQUIRED_RATIOS:
        assert isinstance(result["ratios"][key], float), key
        assert f"`{key}`" in md
    assert result["ratios"]["dnrt_over_gelu_step/resnet18"] == pytest.approx(1.2)
    assert result["targets"]["dnrt_over_gelu_step/resnet18"]["pass"] is False
    assert result["targets"]["fixed_overhead_s"] == {"value": 7.5, "target": "<= 5", "pass": False}
    assert result["targets"]["device_loader_speedup"]["pass"] is True
    assert result["settings"]["mode"] == "smoke" and "batch size" in result["settings"]["note"]
    assert result["machine"]["cpu_model"] and result["machine"]["torch"] == torch.__version__
    assert result["machine"]["torch_threads"] == 2
    assert "PASS" in md and "FAIL" in md and result["machine"]["cpu_model"] in md


@pytest.mark.slow
def test_real_step_benchmark_tiny():
    """The real step path (models, ARR, AdamW, interleaving) on a tiny batch; figures unchecked."""
    res = run.measure_steps("vit_tiny", (("gelu", "none"), ("raa", "arr")), batch_size=2, warmup=1, rounds=2,
                            calls=1)
    ratios = run._step_ratios(res)
    assert set(ratios) == {"dnrt_over_gelu_step/vit_tiny"}
    assert len(ratios["dnrt_over_gelu_step/vit_tiny"]["samples"]) == 2
    assert set(res.images_per_s()) == {"gelu+none", "raa+arr"}


@pytest.mark.slow
def test_gpu_section_code_path_on_cpu():
    from benchmarks.gpu import epoch_times

    out = epoch_times("cpu", num_images=8, batch_size=4, models=("vit_tiny",), configs=(("raa", "arr"),))
    fig = out["vit_tiny"]["raa+arr"]
    assert fig["epoch_time_s"] > 0 and 0.0 <= fig["data_time_frac"] <= 1.0 and fig["gpu_util_pct"] is None


@pytest.mark.slow
def test_overhead_sweep_real_one_cold_run_then_warm_runs(monkeypatch):
    """The real overhead sweep: one worker, so the first run pays the imports and the next reuse them."""
    from benchmarks import overhead

    # the bare-import interpreter would be one more cold start of a few seconds; `make bench` runs it
    monkeypatch.setattr(overhead, "import_seconds", lambda: -1.0)
    out = overhead.measure_overhead(runs=2)
    assert "errors" not in out, out.get("errors")
    assert out["cold_start_s"] > out["startup_s"] > 0 and len(out["warm_samples"]) == 1  # imports: cold only
    mean = (out["cold_start_s"] + out["startup_s"]) / 2
    assert out["imports_s"] == -1.0 and out["per_run_mean_s"] == pytest.approx(mean, abs=0.006)


def test_results_page_stands_alone_and_bench_writes_no_document(smoke):
    """`make bench` writes benchmarks/results/ and nothing else: the Markdown is a page of its own."""
    _, md = smoke
    assert md.startswith("# Benchmark results\n") and "make bench" in md
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe and "benchmarks.run" in recipe.group(1) and ".md" not in recipe.group(1).split("#")[0]
    with pytest.raises(SystemExit):
        run.main(["--smoke", "--readme", "README.md"])


def test_smoke_run_times_the_paper_recipe_per_core_against_pil(smoke):
    """The per-core section times timm's PIL transform, the device path and the lower-bound kernels in
    one process; each ratio is PIL's time over the side's, so PIL's own is 1."""
    result, _ = smoke
    bound = result["absolute"]["paper_bound"]
    ms = bound["ms_per_batch"]
    assert set(ms) == {"pil", "device", "crop_grid_sample", "one_pass"} and all(v > 0 for v in ms.values())
    assert bound["pil_over"]["pil"] == 1.0
    assert bound["pil_over"]["device"] == pytest.approx(ms["pil"] / ms["device"], abs=0.051)
    assert result["ratios"]["paper_device_over_pil_per_core"] == bound["pil_over"]["device"]
    stages = bound["device_stages_ms"]
    assert list(stages) == ["draws", "crop", "randaugment", "normalise", "erase"]
    assert all(v > 0 for v in stages.values())
