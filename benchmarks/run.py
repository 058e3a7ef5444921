"""Run every benchmark in one process and write ``results/latest.json`` and ``latest.md``.

    python -m benchmarks.run [--quick | --smoke] [--threads N] [--out-dir DIR]

Each ratio comes from one run of this process with its sides interleaved (A B A B ...); the
median of the per-round ratios is reported with every sample. ``--quick`` (``make bench
QUICK=1``) shrinks batch and repetitions to finish in minutes; ``--smoke``
checks the machinery in seconds (tiny batches, ``torch.compile(backend="eager")``), its figures
mean nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from dnrt.engine.allocator import keep_freed_memory

from .loader import measure_loader_speedup
from .machine import available_cores, machine_info
from .memory import measure_memory_speedup
from .overhead import measure_overhead
from .paper_bound import measure as measure_paper_bound
from .report import check_targets, markdown, write_json
from .steps import CONFIGS, StepResult, measure_steps
from .timing import paired_ratio

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    mode: str
    batch_size: int  # eager step benchmarks (the target setting is 128)
    warmup: int  # steps per configuration before timing (the first is timed alone)
    rounds: int  # interleaved samples per configuration
    calls: int  # steps per sample
    compile_batch_size: int
    compile_warmup: int
    compile_rounds: int
    compile_calls: int
    compile_backend: str
    cold_compile_cache: bool  # compile into an empty inductor cache (else: whatever cache exists)
    memory_rounds: int
    overhead_runs: int  # runs of the overhead sweep (one worker: 1 cold, the rest warm)
    loader_quick: bool
    gpu_images: int


MODES = {
    "full": Settings("full", 128, 2, 5, 2, 128, 2, 5, 2, "inductor", True, 25, 6, False, 50_000),
    "quick": Settings("quick", 16, 2, 8, 1, 16, 4, 6, 2, "inductor", False, 15, 4, True, 10_000),
    "smoke": Settings("smoke", 2, 1, 1, 1, 2, 1, 1, 1, "eager", False, 1, 2, True, 256),
}


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _section(name: str, fn: Callable[[], object], errors: dict[str, str]):
    """Run one benchmark; a failure is recorded (and the others still run)."""
    _log(f"{name} ...")
    start = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001  (reported in the JSON, exit status 1)
        traceback.print_exc()
        errors[name] = f"{type(exc).__name__}: {exc}"
        return None
    _log(f"{name} done in {time.perf_counter() - start:.1f} s")
    return out


def _step_ratios(res: StepResult, suffix: str = "") -> dict[str, dict]:
    s, m = res.step_s, res.model
    out = {}
    if "raa+none" in s:
        out[f"raa_over_gelu_step{suffix}/{m}"] = paired_ratio(s["raa+none"], s["gelu+none"])
    if "gelu+arr" in s:
        out[f"arr_over_none_step{suffix}/{m}"] = paired_ratio(s["gelu+arr"], s["gelu+none"])
    out[f"dnrt_over_gelu_step{suffix}/{m}"] = paired_ratio(s["raa+arr"], s["gelu+none"])
    return out


def _compiled_steps(s: Settings) -> tuple[StepResult, dict]:
    """vit_tiny gelu+none vs raa+arr, both under ``torch.compile``; with ``cold_compile_cache`` in
    an empty inductor cache, so the compile time is that of a first-ever compilation."""
    cache_dir = tempfile.TemporaryDirectory(prefix="dnrt-inductor-") if s.cold_compile_cache else None
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir.name
    try:
        res = measure_steps("vit_tiny", (("gelu", "none"), ("raa", "arr")), s.compile_batch_size, s.compile_warmup,
                            s.compile_rounds, s.compile_calls, compile_backend=s.compile_backend)
    finally:
        torch._dynamo.reset()
        if cache_dir:
            cache_dir.cleanup()
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            if previous is not None:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
    med = res.to_json()["median_step_s"]
    hits = sum(v for c in res.compile_counters.values() for k, v in c.items() if k.endswith("cache_hit"))
    info = {
        "backend": s.compile_backend,
        "cache": "cold (empty dir)" if cache_dir else f"existing: {'warm, hits' if hits else 'cold, no hits'}",
        "first_step_s": {k: round(v, 2) for k, v in res.first_step_s.items()},
        "compile_s": {k: round(v - med[k], 2) for k, v in res.first_step_s.items()},
        "counters": res.compile_counters,
    }
    return res, info


def run(settings: Settings, out_dir: Path = RESULTS, threads: int | None = None) -> dict:
    """All benchmarks with ``threads`` intra-op threads (default: the available cores); writes
    ``latest.json`` / ``latest.md`` under ``out_dir``; returns the result."""
    t0 = time.perf_counter()
    torch.set_num_threads(threads or available_cores())
    machine = {**machine_info(), "malloc_keep_freed": keep_freed_memory()}  # as dnrt.train does
    errors: dict[str, str] = {}
    details: dict[str, dict] = {}
    absolute: dict[str, dict] = {"images_per_s": {}, "peak_rss_delta_mib": {}}
    steps_json: dict[str, dict] = {}
    s = settings

    mem = _section("arr_memory", lambda: measure_memory_speedup(rounds=s.memory_rounds), errors)
    if mem:
        details["arr_memory_speedup"] = mem
        absolute["arr_memory"] = {k: v for k, v in mem.items() if k not in ("ratio", "samples")}

    for model in ("vit_tiny", "resnet18"):
        res = _section(f"eager steps {model}", lambda m=model: measure_steps(
            m, CONFIGS, s.batch_size, s.warmup, s.rounds, s.calls), errors)
        if res:
            details.update(_step_ratios(res))
            absolute["images_per_s"][model] = res.images_per_s()
            absolute["peak_rss_delta_mib"][model] = res.peak_rss_mib
            steps_json[model] = res.to_json()

    comp = _section("compiled steps vit_tiny", lambda: _compiled_steps(s), errors)
    if comp:
        res, absolute["compile"] = comp
        details.update(_step_ratios(res, "_compiled"))
        absolute["images_per_s"]["vit_tiny (compiled)"] = res.images_per_s()
        steps_json["vit_tiny (compiled)"] = res.to_json()

    loader = _section("device loader", lambda: measure_loader_speedup(s.loader_quick), errors)
    if loader:
        rounds = loader.get("rounds", {})
        samples = [round(a / b, 3) for a, b in zip(rounds.get("device", []), rounds.get("dataloader", []))]
        best = [max(rounds[k]) for k in ("device", "dataloader")] if rounds else None
        details["device_loader_speedup"] = {"ratio": loader["device_loader_speedup"], "samples": samples,
                                            "min_ratio": round(best[0] / best[1], 3) if best else None}
        absolute["loader"] = loader
        paper = loader.get("paper") or {}
        if paper.get("device_over_best_pil") is not None:  # the paper recipe: device vs best PIL worker count
            details["paper_device_over_pil"] = {"ratio": paper["device_over_best_pil"], "samples": []}

    bound = _section("paper recipe per CPU core", lambda: measure_paper_bound(3 if s.loader_quick else 5), errors)
    if bound:  # the device path and a lower bound of any batched crop, against timm's PIL transform
        absolute["paper_bound"] = bound
        details["paper_device_over_pil_per_core"] = {"ratio": bound["pil_over"]["device"], "samples": []}

    overhead = _section("sweep job overhead", lambda: measure_overhead(s.overhead_runs), errors)
    if overhead:
        absolute["overhead"] = overhead
        if overhead.get("errors"):
            errors["sweep job overhead"] = "; ".join(overhead["errors"])
        details["fixed_overhead_s"] = {"ratio": overhead["startup_s"], "samples": overhead["warm_samples"]}

    gpu = None
    if torch.cuda.is_available():
        from .gpu import epoch_times

        gpu = _section("gpu epochs", lambda: epoch_times("cuda", s.gpu_images), errors)

    ratios = {k: v["ratio"] for k, v in details.items() if k != "fixed_overhead_s"}
    for key in ("raa_over_gelu_step/vit_tiny", "dnrt_over_gelu_step/vit_tiny", "dnrt_over_gelu_step/resnet18",
                "dnrt_over_gelu_step_compiled/vit_tiny", "arr_memory_speedup", "device_loader_speedup"):
        ratios.setdefault(key, None)  # a failed section leaves its ratio null
    machine["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "schema": 1,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine": machine,
        "settings": {**asdict(s), "note": "" if s.batch_size == 128 else
                     f"batch size {s.batch_size}, not 128: {s.mode} mode"},
        "ratios": ratios,
        "targets": check_targets({**ratios, "fixed_overhead_s": (overhead or {}).get("startup_s")}),
        "ratio_details": details,
        "absolute": {**absolute, "steps": steps_json},
        "gpu": gpu,
        "errors": errors,
    }
    write_json(result, out_dir / "latest.json")
    (out_dir / "latest.md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small batch, few rounds (a few minutes)")
    mode.add_argument("--smoke", action="store_true", help="seconds; checks the machinery only")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("DNRT_BENCH_THREADS", 0)) or None,
                        help="torch threads (default: $DNRT_BENCH_THREADS, else the available cores)")
    args = parser.parse_args(argv)
    settings = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    result = run(settings, args.out_dir, args.threads)
    summary = (args.out_dir / "latest.md").read_text()
    print(summary)
    _log(f"wrote {args.out_dir / 'latest.json'} and latest.md in {result['wall_s']:.0f} s")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
