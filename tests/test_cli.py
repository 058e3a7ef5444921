"""launch.py as a user runs it: help and an unknown group option (bad values: tests/test_config_truth.py;
a sweep whose cells fail independently: tests/test_sweep_outcomes.py)."""

import pytest

# launch.py end to end (--help in a process of its own, the refusal as the script run in this process):
# not in `make test-fast`.
pytestmark = pytest.mark.slow


def test_help_lists_the_groups(store):
    proc = store.launch("--help", check=True)
    for group in ("model", "act", "regularizer", "dataset", "optim", "sched", "trainer", "tracking"):
        assert f"{group}:" in proc.stdout, group
    assert "raa_relu" in proc.stdout and "vit_tiny" in proc.stdout


def test_unknown_group_option_lists_the_options(store):
    proc = store.launch("model=resnet81")
    assert proc.returncode == 2
    assert "model=resnet81" in proc.stderr and "valid: alexnet," in proc.stderr and "resnet18" in proc.stderr
    assert store.runs() == []
