"""dnrt's Hydra launchers: submitit launchers that pack several sweep runs into one job."""
