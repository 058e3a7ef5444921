"""dnrt entry point: ``python launch.py [-m] model=... act=... regularizer=... dataset=...``.

``--plan`` / ``--plan-json`` print what the command would do (``dry_run=true`` / ``dry_run=json``),
with each cell's estimated cost; ``--calibrate`` times the steps the estimates lack (``sweep.calibrate=true``).
``--rerun RUN_ID [key=value ...]`` launches a logged run, or a sweep's parent run's cells, again
(docs/cluster.md, "Re-running a run").
"""

import sys

import hydra
from omegaconf import DictConfig

PLAN_FLAGS = {"--plan": "dry_run=true", "--plan-json": "dry_run=json", "--calibrate": "sweep.calibrate=true"}


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from dnrt.launching.entry import run_job

    return run_job(cfg)


if __name__ == "__main__":
    import os
    import uuid

    import hydra._internal.utils as hydra_utils

    from dnrt.launching.hydra_errors import one_line_errors

    if "--plan-json" in sys.argv:  # stdout carries the JSON alone (`... --plan-json | jq`): logs to stderr
        sys.argv += [f"hydra.{name}.handlers.console.stream=ext://sys.stderr"
                     for name in ("hydra_logging", "job_logging")]
    sys.argv = [PLAN_FLAGS.get(arg, arg) for arg in sys.argv]
    # this launch's id (its sweep directory's name), fresh even where the environment holds an earlier one;
    # the jobs it starts inherit it
    os.environ["DNRT_LAUNCH_ID"] = uuid.uuid4().hex[:6]
    # Hydra's composition errors (an unknown group option or key) as one line with exit code 2
    hydra_utils.run_and_report = one_line_errors(hydra_utils.run_and_report)
    if any(arg == "--rerun" or arg.startswith("--rerun=") for arg in sys.argv):
        from dnrt.launching.rerun import RerunRefused, rerun_main, split_rerun

        try:
            run_id, rest = split_rerun(sys.argv[1:])
        except RerunRefused as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(2) from None
        argv = rerun_main(run_id, rest)
        if argv is None:
            raise SystemExit(0)
        sys.argv = [sys.argv[0], *argv]
    main()
