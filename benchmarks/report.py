"""Targets, and the JSON / Markdown outputs of a benchmark run."""

from __future__ import annotations

import json
import os
from pathlib import Path

# key -> (comparison, bound); fixed_overhead_s is an absolute figure, everything else a ratio
TARGETS: dict[str, tuple[str, float]] = {
    "raa_over_gelu_step/vit_tiny": ("<=", 1.15),
    "dnrt_over_gelu_step/vit_tiny": ("<=", 1.15),
    "dnrt_over_gelu_step/resnet18": ("<=", 1.15),
    "dnrt_over_gelu_step_compiled/vit_tiny": ("<=", 1.05),
    "arr_memory_speedup": (">=", 10.0),
    "device_loader_speedup": (">=", 5.0),
    "fixed_overhead_s": ("<=", 5.0),
}
REQUIRED_RATIOS = [k for k in TARGETS if k != "fixed_overhead_s"]
_SYMBOL = {"<=": "≤", ">=": "≥"}


def check_targets(values: dict[str, float | None]) -> dict[str, dict]:
    """``{key: {value, target, pass}}``; ``pass`` is None where the value is missing."""
    out = {}
    for key, (op, bound) in TARGETS.items():
        value = values.get(key)
        ok = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out[key] = {"value": value, "target": f"{op} {bound:g}", "pass": ok}
    return out


def status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def write_json(result: dict, path: Path) -> None:
    """Write atomically (``*.tmp`` then rename), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "–"
    return f"{x:.3g}{unit}" if abs(x) < 100 else f"{x:.0f}{unit}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _grid(title: str, by_model: dict[str, dict[str, float]], configs: list[str], unit: str = "") -> list[str]:
    rows = [[f"`{m}`", *(_fmt(vals.get(c), unit) for c in configs)] for m, vals in by_model.items()]
    return [title, "", *_table(["Model", *configs], rows), ""]


def markdown(result: dict) -> str:
    """``results/latest.md``, a page of its own: machine, ratios vs targets, absolutes."""
    mc, st, ab = result["machine"], result["settings"], result["absolute"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`QUICK=1`: `--quick`); what the figures mean: docs/measurements.md.",
        "",
        f"Measured with `python -m benchmarks.run{'' if st['mode'] == 'full' else ' --' + st['mode']}` "
        f"({st['mode']} mode, {result['created']}, {result['wall_s']:.0f} s) on **{mc['cpu_model']}**, "
        f"{mc['available_cores']} of {mc['logical_cores']} cores, torch {mc['torch']}, "
        f"{mc['torch_threads']} threads, GPU: {mc['gpu'] or 'none'}, glibc malloc keeps freed memory: "
        f"{'yes' if mc.get('malloc_keep_freed') else 'no'} (as in training). "
        f"Load average at start / end: {mc['load_avg_start'][0]} / {mc['load_avg_end'][0]}.",
        "",
        f"Step ratios: fwd + bwd + AdamW step at 32 px, B={st['batch_size']} "
        f"(compiled: B={st['compile_batch_size']}), median of per-round ratios over "
        f"{st['rounds']} interleaved rounds (samples listed; min-time ratio = fastest sample over fastest "
        "sample). dnrt = RAA + ARR (λ=10, memory updated every step); baseline = GELU, no regulariser.",
        "",
    ]
    rows = []
    details = result["ratio_details"]
    for key, t in result["targets"].items():
        d = details.get(key, {})
        unit = " s" if key == "fixed_overhead_s" else ""
        rows.append([f"`{key}`", _fmt(t["value"], unit), _SYMBOL[t["target"][:2]] + t["target"][2:] + unit,
                     status(t["pass"]), _fmt(d.get("min_ratio")), ", ".join(_fmt(s) for s in d.get("samples", []))])
    for key, value in result["ratios"].items():
        if key not in result["targets"]:
            d = details.get(key, {})
            rows.append([f"`{key}`", _fmt(value), "–", "info", _fmt(d.get("min_ratio")),
                         ", ".join(_fmt(s) for s in d.get("samples", []))])
    lines += _table(["Metric", "Value", "Target", "Status", "Min-time ratio", "Samples"], rows) + [""]

    configs = ["gelu+none", "gelu+arr", "raa+none", "raa+arr"]
    lines += _grid(f"Training throughput, images/s (eager, B={st['batch_size']}; compiled: "
                   f"B={st['compile_batch_size']}):", ab.get("images_per_s", {}), configs)
    lines += _grid("Peak RSS above the pre-step baseline during warm-up, MiB (eager; psutil sampling, "
                   "approximate):", ab.get("peak_rss_delta_mib", {}), configs)
    comp = ab.get("compile") or {}
    if comp:
        first = ", ".join(f"{k} {v:.1f} s" for k, v in comp.get("first_step_s", {}).items())
        lines.append(f"- `torch.compile` (vit_tiny, backend {comp.get('backend')}, inductor cache "
                     f"{comp.get('cache')}): first step incl. compilation {first}; "
                     f"compile ≈ {', '.join(f'{k} {v:.1f} s' for k, v in comp.get('compile_s', {}).items())}.")
    mem = ab.get("arr_memory") or {}
    if mem:
        lines.append(f"- ARR class memory, update + targets for {mem['taps']} taps (B={mem['batch_size']}, "
                     f"d={mem['num_features']}, {mem['num_classes']} classes): naive loop {mem['naive_ms']:.1f} ms, "
                     f"vectorised {mem['vectorised_ms']:.2f} ms per step.")
    ld = ab.get("loader") or {}
    if ld:
        lines.append(f"- CIFAR loader ({ld.get('num_images')} images, B={ld.get('batch_size')}, "
                     f"{ld.get('augment')} augmentation, {ld.get('device')}): device-resident "
                     f"{_fmt(ld.get('device_imgs_per_s'))} images/s vs torchvision DataLoader + PIL "
                     f"{_fmt(ld.get('dataloader_imgs_per_s'))} images/s.")
        paper = (ld.get("paper") or {}).get("imgs_per_s_by_workers") or {}
        if paper:
            lines.append(f"- Paper recipe's train path (RandAugment on PIL images, same files, "
                         f"B={ld.get('batch_size')}): "
                         + ", ".join(f"{_fmt(v)} images/s with {k} DataLoader workers" for k, v in paper.items())
                         + f", beside {_fmt(ld.get('device_imgs_per_s'))} for the device-resident `standard` path.")
    ov = ab.get("overhead") or {}
    if ov:
        lines.append(f"- Sweep run fixed overhead (`startup_s`: job start → first training step, incl. MLflow run "
                     f"creation; {ov.get('job')}): warm run {_fmt(ov.get('startup_s'), ' s')} "
                     f"(samples {ov.get('warm_samples')}); cold run, the worker's first, "
                     f"{_fmt(ov.get('cold_start_s'), ' s')}, of which {_fmt(ov.get('imports_s'), ' s')} is a fresh "
                     f"interpreter importing torch, torchvision, timm and MLflow; mean over the sweep "
                     f"{_fmt(ov.get('per_run_mean_s'), ' s')}; sweep wall time {_fmt(ov.get('sweep_wall_s'), ' s')}; "
                     f"one-off store creation {_fmt(ov.get('store_create_s'), ' s')}.")
    gpu = result.get("gpu")
    lines.append("")
    if gpu:
        lines.append(f"GPU ({gpu.get('device_name')}): one epoch of {gpu['num_images']} synthetic CIFAR-shaped "
                     f"device-resident images, B={gpu['batch_size']}, bf16:")
        lines.append("")
        rows = [[f"`{m}`", c, _fmt(v["epoch_time_s"], " s"), _fmt(v["images_per_s"]),
                 _fmt(v["gpu_util_pct"], " %"), _fmt(v["data_time_frac"])]
                for m, cs in gpu.items() if isinstance(cs, dict) for c, v in cs.items()]
        lines += _table(["Model", "Config", "Epoch", "Images/s", "GPU util", "Data time frac"], rows)
    else:
        lines.append("GPU figures: not measured (no CUDA device).")
    if result.get("errors"):
        lines += ["", "Errors: " + "; ".join(f"{k}: {v}" for k, v in result["errors"].items())]
    return "\n".join(lines) + "\n"
