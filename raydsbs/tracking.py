"""Experiment tracking the way Ray users do it: MLflow, through Ray's own integration.

With ``tracking.mlflow_uri`` set, every training is one MLflow run, named after the training and tagged
``raydsbs.training``, in the experiment ``tracking.experiment`` (the run directory's name by default):

    rank 0 of the training   its config (task, teacher, student, train keys) as params, its metrics at every
                             checkpoint (Ray's ``setup_mlflow``: the other ranks get a no-op)
    once scored              its val and test accuracy, and its model folder as the artifact ``model``
    a sweep                  Ray Tune's ``MLflowLoggerCallback``: a run per trial, in ``<experiment>-sweep``

A training resumed after a kill logs into a new MLflow run of the same name; the scores and the model go to the
latest one.
"""

from __future__ import annotations

import logging

from raydsbs.config import Config
from raydsbs.rundir import RunDir
from raydsbs.storage import Location, local_copy

logger = logging.getLogger(__name__)

TRAINING_TAG = "raydsbs.training"
LOGGED_SECTIONS = ("task", "teacher", "student", "train")  # what a training's params are (MLflow takes 100 a call)


def experiment_name(config: Config, run: RunDir) -> str:
    return config.tracking.experiment or run.root.name


def _params(config: Config) -> dict:
    params = {}
    for section in LOGGED_SECTIONS:
        for key, value in getattr(config, section).model_dump(mode="json").items():
            params[f"{section}.{key}"] = value
    return params


def training_tracker(config: Config, run: RunDir, training: str):
    """In a Ray Train worker: MLflow, set up for this training on rank 0 (a no-op module on the other ranks), or
    None when tracking is off."""
    if not config.tracking.mlflow_uri:
        return None
    from ray.air.integrations.mlflow import setup_mlflow

    return setup_mlflow(
        _params(config),
        tracking_uri=config.tracking.mlflow_uri,
        experiment_name=experiment_name(config, run),
        run_name=training,
        create_experiment_if_not_exists=True,
        tags={TRAINING_TAG: training, "raydsbs.run": run.root.name},
    )


def log_checkpoint(tracker, metrics: dict) -> None:
    """A checkpoint's numeric metrics, at its optimizer step."""
    if tracker is not None:
        numbers = {key: float(value) for key, value in metrics.items() if isinstance(value, int | float)}
        tracker.log_metrics(numbers, step=int(metrics["step"]))


def log_scored(config: Config, run: RunDir, training: Location, metrics: dict, model: Location) -> None:
    """A scored training's accuracies and model folder, into its latest MLflow run (none: nothing logged)."""
    if not config.tracking.mlflow_uri:
        return
    import mlflow

    mlflow.set_tracking_uri(config.tracking.mlflow_uri)
    found = mlflow.search_runs(
        experiment_names=[experiment_name(config, run)],
        filter_string=f"tags.`{TRAINING_TAG}` = '{training.name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    if not found:
        logger.warning("tracking | no MLflow run of %s to log its scores into", training.name)
        return
    with mlflow.start_run(run_id=found[0].info.run_id):
        mlflow.log_metrics({key: metrics[key] for key in ("val_accuracy", "test_accuracy") if key in metrics})
        mlflow.log_artifacts(str(local_copy(model)), artifact_path="model")
    logger.info("tracking | %s logged to MLflow run %s", training.name, found[0].info.run_id)


def sweep_callbacks(config: Config, run: RunDir) -> list:
    """Ray Tune's MLflow callback for a sweep (a run per trial), or none."""
    if not config.tracking.mlflow_uri:
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return [
        MLflowLoggerCallback(
            tracking_uri=config.tracking.mlflow_uri,
            experiment_name=f"{experiment_name(config, run)}-sweep",
            save_artifact=False,
        )
    ]
