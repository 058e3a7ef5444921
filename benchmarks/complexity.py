"""Paper Table 4: multiply-accumulates and per-image inference latency at 224 px, ReLU vs DNRT.

    python -m benchmarks.complexity [--rounds N] [--calls N] [--threads N] [--device auto|cpu|cuda] [--out-dir DIR]

Writes ``results/complexity.json`` and ``complexity.md``. DNRT at inference is the RAA model: ARR
only adds a training loss, so it has no inference cost.

What is counted: ``dnrt.models.macs.count_macs`` (torch's ``FlopCounterMode`` FLOPs / 2, split into
linear and conv layers with RAA's w.x, attention products, and other). The ``weights`` column is the
one compared with the paper.

Latency: batch 1, ``model.eval()`` under ``torch.inference_mode()``, the four models interleaved
round by round (``benchmarks.timing.alternate``); each sample is the mean of ``calls`` forwards and
the figure is the median sample. Latency runs the models as built (fused attention where timm uses it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from dnrt.engine.allocator import keep_freed_memory
from dnrt.models import create_model
from dnrt.models.macs import count_macs
from dnrt.nn import SurgeryReport

from .machine import available_cores, machine_info
from .report import _table, write_json
from .timing import alternate, median

RESULTS = Path(__file__).resolve().parent / "results"
IMG_SIZE = 224
NUM_CLASSES = 1000
MODELS = ("vit_tiny", "tnt_small")
# (label, act): the paper's ReLU baseline and DNRT (RAA on GELU; ARR costs nothing at inference)
SIDES = (("relu", "relu"), ("dnrt", "raa"))
# DNRT paper, Table 4 (224 px): G multiply-accumulates and ms per image
PAPER = {
    ("vit_tiny", "relu"): (1.078, 4.5), ("vit_tiny", "dnrt"): (1.080, 4.6),
    ("tnt_small", "relu"): (4.849, 10.1), ("tnt_small", "dnrt"): (4.856, 10.5),
}
def raa_site_macs(report: SurgeryReport, sample_batch: int = 2) -> int:
    """Per-image MACs of RAA's w.x from the dry run's call sites: one per input element (numel / C
    per site times C), the dry run's batch of ``sample_batch`` divided out."""
    total = 0
    for site in report.sites:
        numel = 1
        for s in site.shape:
            numel *= s
        total += numel // sample_batch
    return total


def _forward(model: nn.Module, x: torch.Tensor):
    sync = x.device.type == "cuda"

    def call() -> None:
        with torch.inference_mode():
            model(x)
        if sync:
            torch.cuda.synchronize(x.device)

    return call


def measure_latency(models: dict[str, nn.Module], img_size: int = IMG_SIZE, rounds: int = 20, calls: int = 3,
                    warmup: int = 3, device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Per-image forward milliseconds of every model, one sample per model per round, interleaved."""
    x = torch.randn(1, 3, img_size, img_size, device=device)
    sides = {}
    for key, model in models.items():
        model.eval().to(device)
        sides[key] = _forward(model, x)
        for _ in range(warmup):
            sides[key]()
    seconds = alternate(sides, rounds=rounds, calls=calls)
    return {k: [round(s * 1e3, 3) for s in v] for k, v in seconds.items()}


def run(rounds: int = 20, calls: int = 3, device: str = "auto", threads: int | None = None,
        out_dir: Path | None = RESULTS) -> dict:
    """Count and time every (model, side); write ``complexity.{json,md}`` into ``out_dir``."""
    torch.set_num_threads(threads or available_cores())
    keep_freed_memory()
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    start = time.perf_counter()
    machine = machine_info()
    rows, models = [], {}
    for name in MODELS:
        for label, act in SIDES:
            torch.manual_seed(0)
            built = create_model(name, num_classes=NUM_CLASSES, img_size=IMG_SIZE, act=act)
            macs = count_macs(built.model)
            rows.append({"model": name, "mechanism": label, "act": act, "macs": macs,
                         "params": sum(p.numel() for p in built.model.parameters()),
                         "raa_site_macs": raa_site_macs(built.surgery) if act == "raa" else 0,
                         "paper_gmacs": PAPER[(name, label)][0], "paper_latency_ms": PAPER[(name, label)][1]})
            models[f"{name}/{label}"] = built.model
    samples = measure_latency(models, rounds=rounds, calls=calls, device=dev)
    for row in rows:
        s = samples[f"{row['model']}/{row['mechanism']}"]
        row["latency_ms"] = round(median(s), 3)
        row["latency_ms_samples"] = s
    machine["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(time.perf_counter() - start, 1),
        "settings": {"img_size": IMG_SIZE, "num_classes": NUM_CLASSES, "batch_size": 1, "rounds": rounds,
                     "calls": calls, "device": str(dev)},
        "machine": machine,
        "rows": rows,
    }
    if out_dir is not None:
        write_json(result, out_dir / "complexity.json")
        (out_dir / "complexity.md").write_text(markdown(result))
    return result


def _g(macs: int) -> str:
    return f"{macs / 1e9:.4f}"


def markdown(result: dict) -> str:
    """Table 4 beside the paper, with what was counted and where the counts differ."""
    st, mc = result["settings"], result["machine"]
    where = mc["gpu"] if st["device"].startswith("cuda") else f"{mc['cpu_model']}, {mc['torch_threads']} threads"
    lines = [
        f"Measured with `python -m benchmarks.complexity` ({result['created']}, {result['wall_s']:.0f} s; "
        f"torch {mc['torch']}; latency on {st['device']}: {where}; load average {mc['load_avg_start'][0]} / "
        f"{mc['load_avg_end'][0]}). {st['img_size']} px, {st['num_classes']} classes, batch 1. "
        "GMACs: torch's `FlopCounterMode` / 2; *weights* = linear and conv layers, RAA's w·x included; "
        f"*attention* = q·kᵀ and attn·v. Latency: median of {st['rounds']} interleaved samples of "
        f"{st['calls']} forwards each.",
        "",
    ]
    body = []
    for r in result["rows"]:
        m = r["macs"]
        diff = (m["weights"] / 1e9 - r["paper_gmacs"]) / r["paper_gmacs"] * 100
        body.append([f"`{r['model']}`", r["mechanism"], _g(m["weights"]), f"{r['paper_gmacs']:.3f}", f"{diff:+.2f}%",
                     _g(m["attention"]), _g(m["total"]), f"{r['latency_ms']:.1f}", f"{r['paper_latency_ms']:.1f}"])
    lines += _table(["Model", "Mechanism", "GMACs (weights)", "Paper GMACs", "Δ vs paper", "GMACs (attention)",
                     "GMACs (all counted)", "Latency ms", "Paper ms"], body)
    lines.append("")
    by = {(r["model"], r["mechanism"]): r for r in result["rows"]}
    for name in MODELS:
        relu, dnrt = by[(name, "relu")], by[(name, "dnrt")]
        added = dnrt["macs"]["total"] - relu["macs"]["total"]
        paper_added = (dnrt["paper_gmacs"] - relu["paper_gmacs"]) * 1e9
        expected = dnrt["raa_site_macs"]
        all_in = (relu["macs"]["total"] / 1e9 - relu["paper_gmacs"]) / relu["paper_gmacs"] * 100
        lines.append(
            f"- `{name}`: DNRT adds {added:,} MACs ({added / relu['macs']['total'] * 100:.2f}%; the paper: "
            f"{paper_added / 1e9:.3f} G), "
            + ("exactly RAA's w·x, one MAC per element of each RAA input" if added == expected else
               f"but RAA's w·x is {expected:,}, one MAC per element of each RAA input")
            + f". Parameters {relu['params']:,} -> {dnrt['params']:,}. Latency DNRT / ReLU "
            f"{dnrt['latency_ms'] / relu['latency_ms']:.2f} (paper "
            f"{dnrt['paper_latency_ms'] / relu['paper_latency_ms']:.2f})."
            + (f" Counting the attention products too, ReLU is {relu['macs']['total'] / 1e9:.3f} G, "
               f"{all_in:+.1f}% vs the paper's figure." if abs(all_in) > 1 else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved latency samples per model")
    parser.add_argument("--calls", type=int, default=3, help="forwards per sample")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("DNRT_BENCH_THREADS", 0)) or None,
                        help="torch threads (default: $DNRT_BENCH_THREADS, else the available cores)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    run(args.rounds, args.calls, args.device, args.threads, args.out_dir)
    print((args.out_dir / "complexity.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
