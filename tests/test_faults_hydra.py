"""Hydra's own mistakes (an unknown group option, an unknown key) refused like dnrt's: one line
``error: ...`` naming the option or key and the closest valid name, exit code 2, nothing created."""

from __future__ import annotations

import dataclasses
import difflib

from dnrt.schemas import TrainerConf
from tests.harness.config import CONF


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_an_unknown_group_option_is_one_line_with_the_closest_option(store):
    proc = store.launch("model=resnet19", *store.overrides())
    options = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
    closest = difflib.get_close_matches("resnet19", options, n=1)[0]
    assert proc.returncode == 2
    assert _error_lines(proc) == [f"error: model=resnet19: no such option of the config group model (did you mean "
                                  f"{closest}?); valid: {', '.join(options)}"]
    assert closest == "resnet18"
    assert store.runs(children_only=False) == []


def test_an_unknown_key_is_one_line_with_the_closest_key(store):
    proc = store.launch("trainer.epochz=3", *store.overrides())
    keys = sorted(f.name for f in dataclasses.fields(TrainerConf))
    assert proc.returncode == 2
    expected = f"error: trainer.epochz: unknown key (did you mean epochs?); valid: {', '.join(keys)}"
    assert _error_lines(proc) == [expected]


def test_a_sweep_cell_with_an_unknown_option_is_refused_naming_it(store):
    proc = store.launch("-m", "act=rra,gelu", *store.overrides())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "act=rra: no such option of the config group act (did you mean raa?)" in proc.stderr, proc.stderr
    assert store.runs(children_only=False) == []
