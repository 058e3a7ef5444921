"""dnrt entry point: ``python launch.py [-m] model=... act=... regularizer=... dataset=...``.

``--plan`` / ``--plan-json`` print what the command would do (``dry_run=true`` / ``dry_run=json``).
"""

import sys

import hydra
from omegaconf import DictConfig

PLAN_FLAGS = {"--plan": "dry_run=true", "--plan-json": "dry_run=json"}


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from dnrt.launching.entry import run_job

    return run_job(cfg)


if __name__ == "__main__":
    sys.argv = [PLAN_FLAGS.get(arg, arg) for arg in sys.argv]
    main()
