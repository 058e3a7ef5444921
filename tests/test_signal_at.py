"""``trainer.signal_at_step``: what it accepts, what it refuses (one line naming the key, before any
run), and which rank's process it signals."""

from __future__ import annotations

import signal

import pytest

from dnrt.config import ConfigError
from dnrt.engine.faults import SignalAt, after_step, parse_signal_at
from tests.harness.config import SMALL

KEY = r"trainer\.signal_at_step="


@pytest.mark.parametrize("setting,expected", [
    (None, None),
    ({"step": 4}, SignalAt(4, signal.SIGTERM, None)),
    ({"step": 4, "signal": "sigusr2"}, SignalAt(4, signal.SIGUSR2, None)),
    ({"step": 7, "signal": "STOP", "rank": 1}, SignalAt(7, signal.SIGSTOP, 1)),
    ({"step": 1, "signal": "KILL", "rank": 0}, SignalAt(1, signal.SIGKILL, 0)),
])
def test_settings_it_accepts(setting, expected):
    assert parse_signal_at(setting) == expected


@pytest.mark.parametrize("setting", [
    {"step": 4, "rank": -1}, {"step": 4, "rank": "1"}, {"step": 4, "rank": 1.0}, {"step": 4, "rank": True},
    {"step": 0}, {"step": 4, "signal": "HUP"}, {"signal": "TERM"}, 4,
])
def test_bad_settings_are_one_line_naming_the_key(setting):
    with pytest.raises(ConfigError, match=KEY) as err:
        parse_signal_at(setting)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("rank,fires", [(None, True), (0, True), (1, False)])
def test_without_a_process_group_this_process_is_rank_0(rank, fires):
    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, _frame: seen.append(signum))
    try:
        at = parse_signal_at({"step": 3, "signal": "USR2", "rank": rank})
        after_step(at, 2)  # not the step: nothing, whatever the rank
        after_step(at, 3)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == ([signal.SIGUSR2] if fires else [])


def test_a_bad_rank_is_refused_before_any_run(store):
    proc = store.launch(*SMALL, "trainer.epochs=1", "trainer.signal_at_step={step:2,signal:STOP,rank:-1}",
                        *store.overrides())
    lines = [line for line in proc.stderr.splitlines() if "signal_at_step" in line]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: invalid config: trainer.signal_at_step="), proc.stderr
    assert store.runs(children_only=False) == []
