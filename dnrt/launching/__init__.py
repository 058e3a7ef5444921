"""Glue between Hydra launchers (basic, submitit local/SLURM) and a training run."""
