"""The tracking contract: the stored names are pinned (runs logged earlier are found by them), every
status a job reports is a RunStatus, and is_execution_key on every key of the shipped configs."""

from __future__ import annotations

import ast
import json

import pytest
from omegaconf import OmegaConf

from dnrt import tracking_schema as schema
from dnrt.tracking_schema import EXECUTION_KEYS, HIDDEN_KEYS, RunStatus, is_execution_key, is_logged_param
from tests.harness.config import CONF, ROOT, compose_cfg

# The strings in MLflow stores today: the one place outside the schema that spells them. Changing one
# orphans every earlier run that carries it.
STORED = {
    "EXPERIMENT_KIND_TAG": "mlflow.experimentKind", "EXPERIMENT_KIND": "custom_model_development",
    "HASH_TAG": "dnrt.config_hash", "SIGNATURE_TAG": "dnrt.signature_version",
    "REVISED_TAG": "dnrt.signature_revised", "GIT_TAG": "dnrt.git_sha", "DETAIL_TAG": "dnrt.status_detail",
    "JOB_TAG": "dnrt.job_id", "HEARTBEAT_TAG": "dnrt.heartbeat", "CHECKPOINT_TAG": "dnrt.checkpoint",
    "MODEL_TAG": "dnrt.model", "ACT_TAG": "dnrt.act", "REGULARIZER_TAG": "dnrt.regularizer",
    "DATASET_TAG": "dnrt.dataset", "STARTUP_TAG": "dnrt.startup", "STARTUP_COLD": "cold", "STARTUP_WARM": "warm",
    "DEVICE_TAG": "dnrt.device", "THREADS_TAG": "dnrt.threads", "HEADLINE_TAG": "dnrt.headline",
    "ARR_RANKS_TAG": "dnrt.arr_ranks_identical", "SWEEP_TAG": "dnrt.sweep_id", "KIND_TAG": "dnrt.kind",
    "SWEEP_KIND": "sweep", "OVERRIDES_TAG": "dnrt.overrides", "SWEEP_DIR_TAG": "dnrt.sweep_dir",
    "PARENT_TAG": "mlflow.parentRunId", "RUN_NAME_TAG": "mlflow.runName", "OVERRIDES_PARAM": "overrides",
    "TRAIN_LOSS": "train/loss", "TRAIN_LOSS_CE": "train/loss_ce", "TRAIN_LOSS_ARR": "train/loss_arr",
    "TRAIN_ACC1": "train/acc1", "TRAIN_THROUGHPUT": "train/throughput_img_s",
    "TRAIN_DATA_TIME_FRAC": "train/data_time_frac", "LR": "lr", "EPOCH_TIME": "epoch_time_s",
    "VAL_LOSS": "val/loss", "VAL_LOSS_ARR": "val/loss_arr", "VAL_ACC1": "val/acc1", "VAL_ACC5": "val/acc5",
    "VAL_AUC": "val/auc", "TEST_AUC": "test/auc",
    "TEST_AUC_AT_MIN_VAL_LOSS": "test/auc_at_min_val_loss", "STARTUP": "startup_s", "SYSTEM_PREFIX": "system/",
    "BEST_VAL_ACC1": "best/val_acc1", "FINAL_VAL_ACC1": "final/val_acc1",
    "CONFIG_ARTIFACT": "config.yaml", "ERROR_ARTIFACT": "error.txt", "CHECKPOINT_DIR": "checkpoints",
    "CHECKPOINT_FILE": "last.pt", "CHECKPOINT_ARTIFACT": "checkpoints/last.pt", "SUMMARY_ARTIFACT": "summary.json",
    "PARAMS": "params.", "TAGS": "tags.", "METRICS": "metrics.",
}
STORED_STATUSES = {"finished", "skipped", "resumed", "failed", "stopped", "refused", "evaluated"}


def test_every_stored_name_is_pinned_and_unchanged():
    names = {k: v for k, v in vars(schema).items() if k.isupper() and isinstance(v, str)}
    assert names == STORED


def test_derived_names_are_the_stored_ones():
    assert schema.best_metric("val/auc") == "best/val_auc" and schema.final_metric("val/auc") == "final/val_auc"
    assert schema.split_metric("test", "auc") == "test/auc"
    assert schema.tag_column("dnrt.sweep_id") == "tags.dnrt.sweep_id"
    assert schema.tag_filter("dnrt.sweep_id", "x") == "tags.`dnrt.sweep_id` = 'x'"
    assert {schema.sweep_metric(s) for s in RunStatus} == {f"sweep/{s}" for s in STORED_STATUSES}


def test_run_status_is_stored_as_its_plain_string():
    assert {s.value for s in RunStatus} == STORED_STATUSES
    for status in RunStatus:
        # the summary line a job appends, as json.dumps writes it, and read back
        assert json.loads(json.dumps({"status": status}))["status"] == status.value == str(status) == f"{status}"
        assert {status.value: 1}.get(status) == 1  # a Counter of stored strings is indexed by the member


def _outcome_status_args() -> list[tuple[str, int, str]]:
    """(file, line, source) of the status argument of every ``Outcome(...)`` the library builds."""
    found = []
    for path in (ROOT / "dnrt").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Outcome" and node.args:
                found.append((str(path.relative_to(ROOT)), node.lineno, ast.unparse(node.args[0])))
    return found


def test_every_status_a_job_reports_is_a_run_status():
    found = _outcome_status_args()
    assert len(found) >= 6  # train (skip, stop, finish, evaluate), entry (refuse, fail), sweep (refuse)
    loose = [f"{f}:{line}: {src}" for f, line, src in found if not src.startswith("RunStatus.") and src != "status"]
    assert loose == []
    members = {src.removeprefix("RunStatus.") for _, _, src in found if src.startswith("RunStatus.")}
    # `status` in train() is RESUMED or FINISHED; every other member is built somewhere by name
    assert members | {"RESUMED", "FINISHED"} == {s.name for s in RunStatus}


def _flat_keys(cfg) -> set[str]:
    out: set[str] = set()

    def walk(node, prefix):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out.add(prefix)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


@pytest.fixture(scope="module")
def shipped_keys() -> set[str]:
    """Every flattened key of the default config, each experiment preset and each group option."""
    overrides = [[]] + [[f"experiment={p.stem}"] for p in (CONF / "experiment").glob("*.yaml")]
    for group in ("model", "act", "regularizer", "dataset", "optim", "sched", "trainer", "tracking"):
        overrides += [[f"{group}={p.stem}"] for p in (CONF / group).glob("*.yaml")]
    overrides += [[f"resources={p.stem}", "hydra/launcher=slurm"] for p in (CONF / "resources").glob("*.yaml")]
    keys: set[str] = set()
    for ov in overrides:
        keys |= _flat_keys(compose_cfg(ov, return_hydra_config=True))
    return keys


@pytest.mark.slow  # about a hundred compositions
def test_is_execution_key_on_every_shipped_key(shipped_keys):
    """Against the definition spelled another way: some dotted prefix of the key is listed."""
    assert len(shipped_keys) > 100
    for key in shipped_keys:
        parts = key.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        assert is_execution_key(key) == bool(prefixes & set(EXECUTION_KEYS)), key
        assert is_logged_param(key) == (not prefixes & set(HIDDEN_KEYS)), key
    assert {k for k in shipped_keys if is_execution_key(k)} and {k for k in shipped_keys if not is_logged_param(k)}
    assert not is_execution_key("trainer.devices") and not is_execution_key("trainer") and is_execution_key("hydra")
