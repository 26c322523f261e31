"""Experiment tracking the way Ray users do it: TensorBoard, MLflow and Weights & Biases.

Each training's rank 0 keeps a :class:`TrainingLog`; it writes to every tracker the config turns on:

    tracking.tensorboard     event files in ``<run>/tensorboard/<training>/`` (on by default): each optimizer
                             step's losses on rank 0's batch (``step/loss``, ``step/label_loss``,
                             ``step/rationale_loss``) and every checkpoint's metrics (``val_label_loss``, ...)
    tracking.mlflow_uri      an MLflow run per training, through Ray's ``setup_mlflow``: its config as params,
                             every checkpoint's metrics; a training resumed after a kill goes on in its run
    tracking.wandb_project   a W&B run per training, through Ray's ``setup_wandb``: its config, every step's and
                             every checkpoint's metrics; its id fixed by the run directory and the training, so
                             a training resumed after a kill goes on in the same W&B run

Once a training is scored, its val and test accuracy go to its MLflow run (with its model folder, the artifact
``model``) and into its W&B run's summary. A sweep adds Ray Tune's ``MLflowLoggerCallback`` and
``WandbLoggerCallback`` (a run per trial, in ``<experiment>-sweep``); Tune writes each trial's own TensorBoard
events in its folder under ``sweep/``. ``tensorboard --logdir runs/<run>`` shows them all.

W&B reads its key and mode from the environment as usual (``WANDB_API_KEY`` or ``wandb login``;
``WANDB_MODE=offline`` keeps the runs on disk for ``wandb sync``, in ``<run>/wandb/`` for a local run directory);
the driver's ``WANDB_*`` variables go with the training workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from raydsbs.config import Config
from raydsbs.rundir import RunDir
from raydsbs.storage import Location, local_copy, upload

logger = logging.getLogger(__name__)

TRAINING_TAG = "raydsbs.training"
LOGGED_SECTIONS = ("task", "teacher", "student", "train")  # what a training's params are (MLflow takes 100 a call)
SCORES = ("val_accuracy", "test_accuracy")


def experiment_name(config: Config, run: RunDir) -> str:
    return config.tracking.experiment or run.root.name


def _params(config: Config) -> dict:
    params = {}
    for section in LOGGED_SECTIONS:
        for key, value in getattr(config, section).model_dump(mode="json").items():
            params[f"{section}.{key}"] = value
    return params


def _numbers(metrics: dict) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items() if isinstance(value, int | float)}


class TensorBoardEvents:
    """One training's event files in ``<run>/tensorboard/<training>/``. A run directory in a bucket gets them
    written locally and uploaded at every checkpoint and at the end.

    A resumed training starts a new file that purges what the killed attempt logged after its checkpoint
    (TensorBoard drops the steps from ``purge_step`` on), so its curves show each step once."""

    def __init__(self, target: Location, resumed_step: int):
        from tensorboardX import SummaryWriter

        self.target = None if target.is_local else target
        folder = target.local_path() if target.is_local else Path(tempfile.mkdtemp(prefix="raydsbs-tensorboard-"))
        self.writer = SummaryWriter(
            str(folder),
            purge_step=resumed_step + 1 if resumed_step else None,
            filename_suffix=f".{os.getpid()}.{uuid.uuid4().hex[:6]}",  # two attempts in one second: two files
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        self.writer.flush()
        if self.target is not None:
            self.target.mkdir()
            for file in Path(self.writer.logdir).iterdir():
                upload(file, self.target / file.name)

    def close(self) -> None:
        self.flush()
        self.writer.close()
        if self.target is not None:  # uploaded: the local copy goes
            shutil.rmtree(self.writer.logdir, ignore_errors=True)


def wandb_run_id(run: RunDir, training: str) -> str:
    """The same W&B run for a training wherever it restarts; another for the same training of another run."""
    return hashlib.sha256(f"{run.root}/{training}".encode()).hexdigest()[:24]


def _wandb_dir(run: RunDir) -> str | None:
    """W&B keeps its run files under ``<dir>/wandb/``: the run directory when it is local, else W&B's default."""
    return str(run.root.local_path()) if run.root.is_local and not os.environ.get("WANDB_DIR") else None


def _wandb_run(config: Config, run: RunDir, training: str) -> dict:
    """``wandb.init``'s arguments for the W&B run of ``training``: made, or resumed where it was left."""
    return {
        "project": config.tracking.wandb_project,
        "id": wandb_run_id(run, training),
        "name": training,
        "group": experiment_name(config, run),
        "resume": "allow",
        "dir": _wandb_dir(run),
    }


# what W&B itself sets in a process that has started a run: its local service's socket, its start method
WANDB_PROCESS_VARIABLES = {"WANDB_SERVICE", "WANDB_START_METHOD"}


def worker_env(config: Config) -> dict[str, str]:
    """The driver's ``WANDB_*`` settings (key, mode, host, entity...), for the training workers when W&B is on."""
    if not config.tracking.wandb_project:
        return {}
    return {
        key: value
        for key, value in os.environ.items()
        if key.startswith("WANDB_") and not key.startswith("WANDB__") and key not in WANDB_PROCESS_VARIABLES
    }


class TrainingLog:
    """Where rank 0 of a training logs: each tracker the config turns on (none on the other ranks)."""

    def __init__(self, config: Config, run: RunDir, training: str, rank: int, resumed_step: int = 0):
        self.tensorboard = self.mlflow = self.wandb = None
        if rank != 0:
            return
        tracking = config.tracking
        if tracking.tensorboard:
            self.tensorboard = TensorBoardEvents(run.root / "tensorboard" / training, resumed_step)
        if tracking.mlflow_uri:
            from ray.air.integrations.mlflow import setup_mlflow

            earlier = _latest_mlflow_run(config, run, training) if resumed_step else None
            if earlier:  # a resumed training goes on in its run: MLflow's start_run reads (and clears) this
                os.environ["MLFLOW_RUN_ID"] = earlier
            self.mlflow = setup_mlflow(
                _params(config),
                tracking_uri=tracking.mlflow_uri,
                experiment_name=experiment_name(config, run),
                run_name=training,
                create_experiment_if_not_exists=True,
                tags={TRAINING_TAG: training, "raydsbs.run": run.root.name},
            )
        if tracking.wandb_project:
            from ray.air.integrations.wandb import setup_wandb

            # wandb.init's own id and name take the place of Ray's trial id and name
            self.wandb = setup_wandb(_params(config), rank_zero_only=False, **_wandb_run(config, run, training))

    def step(self, step: int, losses: dict) -> None:
        """One optimizer step's losses on this rank's batch (``step/loss``, ...)."""
        values = {f"step/{key.removeprefix('train_')}": value for key, value in losses.items()}
        if self.tensorboard:
            self.tensorboard.scalars(values, step)
        if self.wandb:
            self.wandb.log(values, step=step)

    def checkpoint(self, metrics: dict) -> None:
        """A checkpoint's numeric metrics, at its optimizer step."""
        values, step = _numbers(metrics), int(metrics["step"])
        if self.tensorboard:
            self.tensorboard.scalars(values, step)
            self.tensorboard.flush()
        if self.mlflow:
            self.mlflow.log_metrics(values, step=step)
        if self.wandb:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
        if self.mlflow:
            self.mlflow.end_run()
        if self.wandb:
            self.wandb.finish()


def tracking_problems(config: Config) -> list[tuple[str, str]]:
    """(what, its fix) for each thing that stops the trackers the config turns on from logging here
    (``raydsbs doctor``)."""
    problems, tracking = [], config.tracking
    uri = tracking.mlflow_uri or ""
    if uri.startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        what = f"tracking.mlflow_uri={uri}: MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true"
        problems.append((what, "export MLFLOW_ALLOW_FILE_STORE=true, or log to an MLflow server (http://host:5000)"))
    if uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5)
        except OSError as error:
            problems.append(
                (f"tracking.mlflow_uri={uri}: no MLflow server answers ({error})", "start it, or fix the URI")
            )
    if tracking.wandb_project and os.environ.get("WANDB_MODE", "") not in ("offline", "disabled"):
        netrc = Path.home() / ".netrc"  # where `wandb login` keeps the key
        logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")
        if not (os.environ.get("WANDB_API_KEY") or logged_in):
            what = f"tracking.wandb_project={tracking.wandb_project}: no W&B key"
            fix = (
                "export WANDB_API_KEY or run `wandb login`; or WANDB_MODE=offline keeps the runs on disk for "
                "`wandb sync`"
            )
            problems.append((what, fix))
    return problems


def log_scored(config: Config, run: RunDir, training: Location, metrics: dict, model: Location) -> None:
    """A scored training's accuracies: into its latest MLflow run (with its model folder) and its W&B run."""
    scores = {key: metrics[key] for key in SCORES if key in metrics}
    if config.tracking.mlflow_uri:
        _mlflow_scored(config, run, training.name, scores, model)
    if config.tracking.wandb_project:
        import wandb

        with wandb.init(**_wandb_run(config, run, training.name)) as tracked:
            tracked.summary.update(scores)
            logger.info("tracking | %s scores logged to W&B run %s", training.name, tracked.id)


def _latest_mlflow_run(config: Config, run: RunDir, training: str) -> str | None:
    """The id of the latest MLflow run of ``training``, or None."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking.mlflow_uri)
    found = mlflow.search_runs(
        experiment_names=[experiment_name(config, run)],
        filter_string=f"tags.`{TRAINING_TAG}` = '{training}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return found[0].info.run_id if found else None


def _mlflow_scored(config: Config, run: RunDir, training: str, scores: dict, model: Location) -> None:
    import mlflow

    run_id = _latest_mlflow_run(config, run, training)
    if run_id is None:
        logger.warning("tracking | no MLflow run of %s to log its scores into", training)
        return
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(scores)
        mlflow.log_artifacts(str(local_copy(model)), artifact_path="model")
    logger.info("tracking | %s logged to MLflow run %s", training, run_id)


def sweep_callbacks(config: Config, run: RunDir) -> list:
    """Ray Tune's MLflow and W&B callbacks for a sweep (a run per trial), as configured."""
    callbacks, experiment = [], f"{experiment_name(config, run)}-sweep"
    if config.tracking.mlflow_uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=config.tracking.mlflow_uri, experiment_name=experiment, save_artifact=False
            )
        )
    if config.tracking.wandb_project:
        from ray.air.integrations.wandb import WandbLoggerCallback

        callbacks.append(
            WandbLoggerCallback(project=config.tracking.wandb_project, group=experiment, dir=_wandb_dir(run))
        )
    return callbacks
