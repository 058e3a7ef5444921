"""How long the analysis takes to read a paper-scale store: 1,000 generated FINISHED runs shaped like a
``paper_vit`` sweep with seeds (5 ViTs x 3 data sets x 7 mechanisms, 10 seeds, a few cells left out),
written into a temp sqlite store, then timed end to end in this process:

- ``table``: ``analysis.ablation --layout paper_vit`` (one paged search, one groupby);
- ``generic``: ``analysis.ablation`` with the default pivot;
- ``report``: ``analysis.report --no-pdf --no-log`` (summary, every table, the heatmap; no curves above
  400 runs).

Not part of ``make bench``:  python -m benchmarks.analysis_scale [--runs 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

VITS = ("vit_tiny", "deit_tiny", "cait_xxs", "pvt_tiny", "tnt_small")
DATASETS = ("cifar10", "cifar100", "imagenet100")
MECHANISMS = (("softplus", "none"), ("elu", "none"), ("selu", "none"), ("silu", "none"), ("relu", "none"),
              ("gelu", "none"), ("raa", "arr"))


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = fn(*args)
    if rc != 0:
        raise RuntimeError(f"{fn.__module__} exited {rc}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.analysis_scale", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="FINISHED runs to generate (default: 1000)")
    args = p.parse_args(argv)
    from analysis import ablation, report
    from dnrt.testing import generate_sweep_store

    cells = [{"dataset.name": d, "model.name": m, "act.name": a, "regularizer.name": r}
             for d in DATASETS for m in VITS for a, r in MECHANISMS]
    seeds = list(range(max(1, -(-args.runs // len(cells)))))
    cells = cells[: max(1, args.runs // len(seeds))]
    with tempfile.TemporaryDirectory(prefix="dnrt-bench-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        t0 = time.perf_counter()
        store = generate_sweep_store(uri, "scale", cells, seeds, epochs=50, failed=5)
        print(f"generated {store.n_runs} runs ({len(cells)} cells x {len(seeds)} seeds, 50 epochs, 5 failed) "
              f"in {time.perf_counter() - t0:.1f} s")
        base = ["--tracking-uri", uri, "--experiment", "scale", "--no-log"]
        for name, fn, extra in (
                ("table (--layout paper_vit)", ablation.main, ["--layout", "paper_vit", "--out", f"{tmp}/t"]),
                ("table (generic pivot)", ablation.main, ["--out", f"{tmp}/g"]),
                ("report (--no-pdf)", report.main, ["--no-pdf", "--out", f"{tmp}/r"])):
            print(f"{name:28s} {timed(fn, base + extra):6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
