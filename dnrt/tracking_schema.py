"""The tracking contract (docs/design.md §4): every MLflow tag, param, metric and artifact name that
dnrt writes and analysis reads, the statuses a job reports, and which config keys only choose how a
run executes.

Runs logged earlier are found by these exact strings, so a value here never changes
(``tests/test_tracking_schema.py`` pins them). Nothing here imports the project, torch or MLflow:
the light modules that Hydra loads in every ``launch.py`` process can use it.
"""

from __future__ import annotations

from enum import Enum

# -- tags of the experiment -------------------------------------------------------------------
# MLflow 3's UI opens an experiment by its kind: this one lands on the training-runs table.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"

# -- tags of a training run -------------------------------------------------------------------
HASH_TAG = "dnrt.config_hash"  # the run's signature (docs/design.md §5)
SIGNATURE_TAG = "dnrt.signature_version"
REVISED_TAG = "dnrt.signature_revised"  # "<key>=<value>: revision, ..." the signature matched
GIT_TAG = "dnrt.git_sha"
DETAIL_TAG = "dnrt.status_detail"  # running | resumed | finished | failed: <why> | stopped: <why>
JOB_TAG = "dnrt.job_id"  # SLURM array/job id, else host:pid
HEARTBEAT_TAG = "dnrt.heartbeat"  # unix seconds of the last beat
CHECKPOINT_TAG = "dnrt.checkpoint"  # absolute path of the run's last.pt
MODEL_TAG = "dnrt.model"
ACT_TAG = "dnrt.act"
REGULARIZER_TAG = "dnrt.regularizer"
DATASET_TAG = "dnrt.dataset"
STARTUP_TAG = "dnrt.startup"  # STARTUP_COLD or STARTUP_WARM: whether the process trained a run before
STARTUP_COLD, STARTUP_WARM = "cold", "warm"
DEVICE_TAG = "dnrt.device"
THREADS_TAG = "dnrt.threads"  # torch intra-op threads
# The metric a run is judged by (val/acc1 for images, val/auc for node classification); its end-of-run
# values are logged as best_metric(...) and final_metric(...).
HEADLINE_TAG = "dnrt.headline"
ARR_RANKS_TAG = "dnrt.arr_ranks_identical"  # "true" | "false": DDP ranks ended with the same ARR memory

# -- tags of a sweep (its children carry SWEEP_TAG and PARENT_TAG) ------------------------------
SWEEP_TAG = "dnrt.sweep_id"
KIND_TAG = "dnrt.kind"  # SWEEP_KIND on a sweep's parent run, which is never a result
SWEEP_KIND = "sweep"
OVERRIDES_TAG = "dnrt.overrides"  # the sweep's command-line overrides
SWEEP_DIR_TAG = "dnrt.sweep_dir"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests the children under the parent in the UI
RUN_NAME_TAG = "mlflow.runName"  # MLflow's own

# -- params -----------------------------------------------------------------------------------
# A training run's params are its resolved config flattened with dot keys (``optim.lr``), except
# the keys under HIDDEN_KEYS. The sweep's parent run holds one param, OVERRIDES_PARAM.
OVERRIDES_PARAM = "overrides"
# Keys that choose where or how a run executes, not what it computes: left out of the signature
# and of every comparison between runs, so a resumed or re-launched run keeps its identity.
EXECUTION_KEYS = (
    "hydra", "tracking", "force", "data_dir", "resources", "signature", "dry_run", "sweep",
    "trainer.resume", "trainer.eval_only", "trainer.progress", "trainer.workers", "trainer.threads",
    "trainer.ckpt_root", "trainer.log_checkpoint", "trainer.stop_after", "trainer.device", "trainer.signal_at_step",
)
# Not logged as params at all (launcher and output settings).
HIDDEN_KEYS = ("hydra", "resources", "tracking.uri", "signature", "dry_run", "sweep")

# -- metrics (step = epoch unless said otherwise) ---------------------------------------------
TRAIN_LOSS, TRAIN_LOSS_CE, TRAIN_LOSS_ARR = "train/loss", "train/loss_ce", "train/loss_arr"
TRAIN_ACC1 = "train/acc1"
TRAIN_THROUGHPUT = "train/throughput_img_s"
TRAIN_DATA_TIME_FRAC = "train/data_time_frac"  # share of the epoch spent waiting for batches
LR = "lr"
EPOCH_TIME = "epoch_time_s"
VAL_LOSS, VAL_LOSS_ARR = "val/loss", "val/loss_arr"
VAL_ACC1, VAL_ACC5 = "val/acc1", "val/acc5"  # top-1 / top-5 in %, 0-100
VAL_AUC = "val/auc"  # node classification: fraud-vs-normal ROC AUC in %
TEST_AUC = "test/auc"  # the same on the test nodes
# The test AUC of the epoch with the lowest val/loss so far (the DGraphFin baselines' selection).
TEST_AUC_AT_MIN_VAL_LOSS = "test/auc_at_min_val_loss"
STARTUP = "startup_s"  # step = the first epoch this process trains
SYSTEM_PREFIX = "system/"  # MLflow's system metrics (tracking.system_metrics)


def split_metric(split: str, name: str) -> str:
    """``split_metric("test", "auc")`` -> ``test/auc``."""
    return f"{split}/{name}"


def best_metric(metric: str) -> str:
    """End-of-run best value of a per-epoch metric: ``val/acc1`` -> ``best/val_acc1``."""
    return "best/" + metric.replace("/", "_")


def final_metric(metric: str) -> str:
    """End-of-run last value of a per-epoch metric: ``val/acc1`` -> ``final/val_acc1``."""
    return "final/" + metric.replace("/", "_")


BEST_VAL_ACC1, FINAL_VAL_ACC1 = best_metric(VAL_ACC1), final_metric(VAL_ACC1)

# -- artifacts --------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"  # the resolved config
ERROR_ARTIFACT = "error.txt"  # the traceback of a failed run
CHECKPOINT_DIR = "checkpoints"  # trainer.log_checkpoint: last.pt under it
CHECKPOINT_FILE = "last.pt"
CHECKPOINT_ARTIFACT = f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
SUMMARY_ARTIFACT = "summary.json"  # on the sweep's parent: one row per run, as the jobs reported them


class RunStatus(str, Enum):
    """What happened to one run, as its job reports it (the sweep summary's ``status``). The values
    are the stored strings; a member compares, hashes and formats as its value."""

    FINISHED = "finished"
    SKIPPED = "skipped"  # a FINISHED twin exists, or a live run elsewhere
    RESUMED = "resumed"  # resumed from its checkpoint, then finished
    FAILED = "failed"
    STOPPED = "stopped"  # preempted or trainer.stop_after: the same command resumes it
    REFUSED = "refused"  # a config error, found before any run existed
    EVALUATED = "evaluated"  # trainer.eval_only: a checkpoint evaluated, nothing trained

    def __str__(self) -> str:
        return self.value


def sweep_metric(status: RunStatus) -> str:
    """The parent run's count of runs with ``status``: ``sweep/failed``."""
    return f"sweep/{status.value}"


# -- columns of analysis frames (one row per run, as MLflow's search_runs names them) -----------
PARAMS, TAGS, METRICS = "params.", "tags.", "metrics."


def tag_column(tag: str) -> str:
    """``dnrt.sweep_id`` -> ``tags.dnrt.sweep_id``."""
    return TAGS + tag


def tag_filter(tag: str, value: str) -> str:
    """An MLflow search clause matching runs whose ``tag`` equals ``value``."""
    return f"tags.`{tag}` = '{value}'"


def _under(key: str, roots: tuple[str, ...]) -> bool:
    return any(key == root or key.startswith(root + ".") for root in roots)


def is_execution_key(key: str) -> bool:
    """Whether a flattened config key (``trainer.device``, a params column without ``params.``) is an
    execution setting: it or a key above it is in EXECUTION_KEYS (``trainer.device``: yes,
    ``trainer.devices``: no)."""
    return _under(key, EXECUTION_KEYS)


def is_logged_param(key: str) -> bool:
    """Whether a flattened config key is logged as a param (not under HIDDEN_KEYS)."""
    return not _under(key, HIDDEN_KEYS)
