"""``launch.py --rerun RUN_ID [overrides]``: a logged run or a sweep launched again from its id."""

from __future__ import annotations

import pytest

from dnrt.tracking_schema import DETAIL_TAG, GIT_TAG, HASH_TAG, HYDRA_OVERRIDES_TAG, KIND_TAG, OVERRIDES_TAG, SWEEP_KIND
from tests.harness.config import SMALL

ONE = [*SMALL, "trainer.epochs=1"]


def _params(store, run_id: str) -> dict[str, str]:
    return store.client.get_run(run_id).data.params


@pytest.fixture
def finished(store):
    """One finished run of the tiny config; returns its run id."""
    store.launch(*ONE, *store.overrides(), check=True)
    (run,) = store.runs()
    assert run.info.status == "FINISHED"
    return run.info.run_id


def test_rerun_of_a_finished_run_skips_it(store, finished):
    before = store.client.get_run(finished)
    store.launch("--rerun", finished, check=True)
    runs = store.runs()
    assert [r.info.run_id for r in runs] == [finished]
    after = runs[0]
    # untouched: not reopened, nothing logged again
    assert (after.info.status, after.info.end_time) == ("FINISHED", before.info.end_time)
    assert after.data.tags[DETAIL_TAG] == before.data.tags[DETAIL_TAG]


def test_rerun_with_an_override_trains_a_new_run_that_differs_only_there(store, finished):
    store.launch("--rerun", finished, "seed=7", check=True)
    runs = {r.info.run_id: r for r in store.runs()}
    assert len(runs) == 2
    (new_id,) = set(runs) - {finished}
    assert runs[new_id].info.status == "FINISHED"
    old, new = _params(store, finished), _params(store, new_id)
    assert set(old) == set(new)
    assert {k for k in old if old[k] != new[k]} == {"seed"}
    assert new["seed"] == "7"
    assert runs[new_id].data.tags[HASH_TAG] != runs[finished].data.tags[HASH_TAG]


def test_rerun_with_force_makes_a_fresh_run(store, finished):
    store.launch("--rerun", finished, "force=true", check=True)
    runs = store.runs()
    assert len(runs) == 2
    params = [_params(store, r.info.run_id) for r in runs]
    assert {k: v for k, v in params[0].items() if k != "force"} == {k: v for k, v in params[1].items() if k != "force"}


def test_rerun_of_a_sweep_parent_relaunches_its_cells(store, tmp_path):
    sweep = ["-m", *ONE, "act=gelu,raa", *store.overrides(), "hydra/launcher=local",
             f"hydra.sweep.dir={tmp_path / 'm1'}"]
    store.launch(*sweep, check=True)
    (parent,) = [r for r in store.runs(children_only=False) if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    assert parent.data.tags[HYDRA_OVERRIDES_TAG] == "hydra/launcher=local"  # what the re-run launches with
    cells = {r.info.run_id for r in store.runs()}
    assert len(cells) == 2
    # the same cells again: both skipped, nothing new but the re-run's own sweep parent
    proc = store.launch("--rerun", parent.info.run_id, f"hydra.sweep.dir={tmp_path / 'm2'}", check=True)
    assert {r.info.run_id for r in store.runs()} == cells
    parents = [r for r in store.runs(children_only=False) if r.data.tags.get(KIND_TAG) == SWEEP_KIND]
    assert len(parents) == 2
    (again,) = [r for r in parents if r.info.run_id != parent.info.run_id]
    assert again.data.tags[OVERRIDES_TAG] == parent.data.tags[OVERRIDES_TAG]
    assert proc.returncode == 0
    # with an override every cell is a new run: two more, each its original with seed 3
    store.launch("--rerun", parent.info.run_id, "seed=3", f"hydra.sweep.dir={tmp_path / 'm3'}", check=True)
    new = [r for r in store.runs() if r.info.run_id not in cells]
    assert sorted(r.data.params["act.name"] for r in new) == ["gelu", "raa"]
    assert all(r.data.params["seed"] == "3" and r.info.status == "FINISHED" for r in new)


def test_unknown_id_is_refused_with_one_line(store):
    proc = store.launch("--rerun", "0123456789abcdef0123456789abcdef")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such run" in lines[0]


def test_run_without_logged_config_is_refused(store):
    exp = store.client.create_experiment("test")
    run = store.client.create_run(exp)
    store.client.set_terminated(run.info.run_id)
    proc = store.launch("--rerun", run.info.run_id)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no logged config" in lines[0]


def test_group_override_and_unknown_key_are_refused(store, finished):
    for override, said in (("model=vit_tiny", "config group"), ("trainer.nope=1", "not a key")):
        proc = store.launch("--rerun", finished, override)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert len(store.runs()) == 1


def test_another_code_version_is_rerun_with_a_warning_naming_both(store, finished):
    store.client.set_tag(finished, GIT_TAG, "0" * 40)
    proc = store.launch("--rerun", finished, check=True)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "0" * 12 in warnings[0]
    from dnrt.tracking import git_sha

    assert git_sha()[:12] in warnings[0]
