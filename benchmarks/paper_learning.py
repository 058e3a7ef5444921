"""Learning is unchanged by the augmentation backend: digits with ``augment=paper``, PIL vs device.

Runs (``--run``) the sweep ``experiment=demo`` (digits, 8 px, the demo's epochs and batch) with
``dataset.augment=paper`` over models x ``dataset.aug_backend`` {pil, device} x seeds, GELU, no ARR,
into the MLflow store ``--uri``, then prints one row per model and backend: the mean final top-1,
its 95% confidence interval (Student t), and Welch's t-test p-value between the two backends.

    python -m benchmarks.paper_learning --uri sqlite:///paper_learning.db --run [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]


def run_sweep(uri: str, models: str, seeds: str, epochs: int | None = None) -> None:
    cmd = [sys.executable, "launch.py", "-m", "experiment=demo", f"model={models}", "mechanism=gelu",
           "dataset.augment=paper", "dataset.aug_backend=pil,device", f"seed={seeds}", f"tracking.uri={uri}",
           "tracking.experiment=paper_learning", "trainer.threads=1"]
    if epochs is not None:  # the demo's few epochs leave the paper augmentation near chance on 8-px digits
        cmd.append(f"trainer.epochs={epochs}")
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def collect(uri: str) -> dict[tuple[str, str, str], list[float]]:
    """(model, backend, epochs) -> final top-1 (%) of every FINISHED run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("paper_learning")
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    if exp is None:
        return out
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=1000):
        p, m = run.data.params, run.data.metrics
        if "final/val_acc1" in m and p.get("dataset.augment") == "paper":
            out[(p["model.name"], p.get("dataset.aug_backend", "pil"), p.get("trainer.epochs"))].append(
                m["final/val_acc1"])
    return out


def ci95(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan")
    return float(a.mean()), float(half)


def table(results: dict[tuple[str, str, str], list[float]]) -> str:
    lines = ["| model | epochs | backend | runs | final top-1 % (mean ± 95% CI) | Welch p (pil vs device) |",
             "|---|---|---|---|---|---|"]
    for model, epochs in sorted({(m, e) for m, _, e in results}):
        pil, dev = results.get((model, "pil", epochs), []), results.get((model, "device", epochs), [])
        p = stats.ttest_ind(pil, dev, equal_var=False).pvalue if len(pil) > 1 and len(dev) > 1 else float("nan")
        for backend, vals in (("pil", pil), ("device", dev)):
            mean, half = ci95(vals) if vals else (float("nan"), float("nan"))
            lines.append(f"| {model} | {epochs} | {backend} | {len(vals)} | {mean:.2f} ± {half:.2f} | {p:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="MLflow tracking URI of the runs")
    parser.add_argument("--run", action="store_true", help="run the sweep first (finished cells are skipped)")
    parser.add_argument("--models", default="vit_tiny,resnet18")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's (2; vit_tiny 3)")
    args = parser.parse_args()
    if args.run:
        run_sweep(args.uri, args.models, args.seeds, args.epochs)
    print(table(collect(args.uri)))


if __name__ == "__main__":
    main()
