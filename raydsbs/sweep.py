"""Ray Tune sweeps over dotted config keys: every trial is a Ray Train run plus its evaluation.

    sweep:
      grid:
        train.method: [step_by_step, standard_finetune]
        train.train_fraction: [0.5, 1.0]

Grid search trains every combination once: points that differ only in keys
their method ignores (``train.label_source`` for the standard methods, λ for
all but step-by-step) are one trial, whose result ``sweep/results.json``
lists under each point it stands for. Keys of the corpus and the teacher
(``task.*``, ``teacher.*``), which every trial shares, are refused. Random
search (``sweep.search: random``) draws ``sweep.num_samples`` trials from the
grid's lists and ``sweep.ranges``.
With ``sweep.scheduler: asha`` every trial's Ray Train run relays its
validation label loss to Tune at each checkpoint, and ASHA stops the trials
that trail; a stopped trial leaves no model and no result row.

An interrupted sweep started again with the same command is restored with
``Tuner.restore``: finished trials are not rerun, and an unfinished trial's
Ray Train run continues from its latest checkpoint. The trials share the
tokenized training data: the sweep writes it once, before the first trial
starts, for each method and student the grid names (student/tokenized/). Trials also skip
trainings whose model already exists in the run directory (another sweep or
a single ``raydsbs train`` may have made it).
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from pathlib import Path

from raydsbs.config import Config, ConfigError, config_hash
from raydsbs.ray_session import start_ray
from raydsbs.resolve import with_overrides
from raydsbs.rundir import RunDir, producing_stage
from raydsbs.staging import written_whole
from raydsbs.student.launcher import prepare_training_data
from raydsbs.student.tokenized import learned_targets
from raydsbs.student.train_loop import SELECTION_METRIC
from raydsbs.tracking import sweep_callbacks

logger = logging.getLogger(__name__)

# What a trial reports that the report reads; Tune adds its own bookkeeping keys.
# Train keys that change which targets the student learns, hence its tokenized data (with every student.* key).
_DATA_KEYS = {"train.method", "train.label_source"}
GRID_POINT = "grid_point"  # grid search: a trial's parameter is one grid point, {dotted key: value}
_RESULT_KEYS = {
    "training",
    "method",
    "train_fraction",
    "rationale_weight",
    "seed",
    "examples",
    "val_accuracy",
    "test_accuracy",
    "test_tokens_per_answer",
}


def check_grid(config: Config) -> None:
    """Every combination of the grid must be a valid config; all problems are reported at once."""
    problems = []
    values_to_check = dict(config.sweep.grid)
    values_to_check.update({key: [bounds.low, bounds.high] for key, bounds in config.sweep.ranges.items()})
    for key, values in values_to_check.items():
        if stage := producing_stage(key):
            problems.append(
                f"sweep.grid.{key}: changes the run's {stage}, which all trials of a sweep share; run one "
                f"sweep per value instead (raydsbs sweep CONFIG {key}=VALUE, each its own run directory)"
            )
            continue
        if not isinstance(values, list) or not values:
            problems.append(f"sweep.grid.{key} = {values!r}: expected a non-empty list of values")
            continue
        for value in values:
            try:
                with_overrides(config, {key: value})
            except ConfigError as error:
                problems += [f"sweep.grid.{key}: {problem}" for problem in error.problems]
    if problems:
        raise ConfigError("sweep.grid", problems)


def data_variants(config: Config) -> list[Config]:
    """One config per distinct tokenized dataset the grid's trials read: the product of the grid's values for
    the keys that change the token ids (the method and label source, the student's settings), nothing else."""
    keys = [key for key in config.sweep.grid if key.startswith("student.") or key in _DATA_KEYS]
    variants = {}
    for values in itertools.product(*(config.sweep.grid[key] for key in keys)):
        variant = with_overrides(config, dict(zip(keys, values, strict=True)))
        fingerprint = json.dumps([variant.student.model_dump(mode="json"), learned_targets(variant)])
        variants.setdefault(fingerprint, variant)
    return list(variants.values())


def run_trial(params: dict, base: dict, run_dir: str) -> None:
    """One Tune trial: train the student of ``base`` + ``params`` and report its metrics."""
    from ray import tune

    from raydsbs.evaluate import evaluate_student
    from raydsbs.student.launcher import train_student

    config = with_overrides(Config.model_validate(base), params.get(GRID_POINT, params))
    run = RunDir(run_dir)
    scheduled = config.sweep.scheduler != "none"
    trained = train_student(config, run, report_to_tune=scheduled)
    metrics = evaluate_student(config, run, trained)
    if scheduled:  # the scheduler's metric must be in every report, the last one too
        history = json.loads((trained / "training.json").read_text()).get("kept_checkpoints") or []
        metrics = {**metrics, SELECTION_METRIC: min((m[SELECTION_METRIC] for m in history), default=None)}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "metrics.json").write_text(json.dumps(metrics))
        # A checkpoint with the report keeps Result.metrics filled in under Train V2.
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def experiment_name(config: Config) -> str:
    """The Tune experiment of this sweep: named by everything its trials depend on, so a rerun of the same
    sweep restores it, and a sweep over other values (on the same run directory) starts its own."""
    return "trials-" + config_hash(config)  # the config holds the grid too


def distinct_trainings(config: Config) -> dict[str, list[dict]]:
    """The grid's points grouped by the training they name: ``{training name: [grid point, ...]}``, in grid
    order. Points that differ only in keys their method ignores (``train.label_source`` for the standard
    methods, λ for all but step-by-step) are one training."""
    from raydsbs.student.launcher import training_name

    keys = list(config.sweep.grid)
    trainings: dict[str, list[dict]] = {}
    for values in itertools.product(*(config.sweep.grid[key] for key in keys)):
        point = dict(zip(keys, values, strict=True))
        trainings.setdefault(training_name(with_overrides(config, point)), []).append(point)
    return trainings


def param_space(config: Config) -> dict:
    """Tune's search space: one grid point per distinct training (grid search), or random draws from the grid's
    lists and the ranges."""
    from ray import tune

    if config.sweep.search == "grid":
        return {GRID_POINT: tune.grid_search([points[0] for points in distinct_trainings(config).values()])}
    space = {key: tune.choice(values) for key, values in config.sweep.grid.items()}
    for key, bounds in config.sweep.ranges.items():
        space[key] = (tune.loguniform if bounds.log else tune.uniform)(bounds.low, bounds.high)
    return space


def tune_config(config: Config):
    """How many trials, drawn how, run how many at once, and stopped by what."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    sweep_config = config.sweep
    scheduler = None
    if sweep_config.scheduler == "asha":
        # training_iteration counts a trial's reports: one per checkpoint of its Ray Train run.
        scheduler = ASHAScheduler(
            metric=SELECTION_METRIC,
            mode="min",
            time_attr="training_iteration",
            grace_period=sweep_config.grace_reports,
            max_t=10_000,
        )
    return tune.TuneConfig(
        num_samples=sweep_config.num_samples if sweep_config.search == "random" else 1,
        search_alg=BasicVariantGenerator(
            random_state=sweep_config.seed, max_concurrent=sweep_config.max_concurrent_trials
        ),
        scheduler=scheduler,
        max_concurrent_trials=sweep_config.max_concurrent_trials,
    )


def sweep(config: Config, run: RunDir) -> list[dict]:
    """Run every grid combination; returns the metrics of each trial (also in sweep/results.json)."""
    check_grid(config)
    for variant in data_variants(config):  # tokenized once here, read by every trial
        prepare_training_data(variant, run)
    start_ray(config.ray)
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=config.model_dump(mode="json"), run_dir=str(run.root)),
        {"cpu": config.sweep.cpus_per_trial},
    )
    if config.sweep.search == "grid":
        trainings = distinct_trainings(config)
        points = sum(len(group) for group in trainings.values())
        if points > len(trainings):
            logger.info(
                "sweep | %d grid points are %d distinct trainings: each runs once, and the points that differ "
                "only in keys their method ignores share its result",
                points,
                len(trainings),
            )
    experiment = run.sweep / experiment_name(config)
    if tune.Tuner.can_restore(experiment.path, storage_filesystem=experiment.fs):
        logger.info("sweep %s was interrupted; restoring it (finished trials are kept)", experiment.name)
        tuner = tune.Tuner.restore(
            experiment.path, trainable=trainable, resume_errored=True, storage_filesystem=experiment.fs
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(config),
            tune_config=tune_config(config),
            run_config=tune.RunConfig(
                name=experiment.name,
                storage_path=run.sweep.path,
                storage_filesystem=run.sweep.fs,
                callbacks=sweep_callbacks(config, run),
            ),
        )
    grid = tuner.fit()
    failed = [result.error for result in grid if result.error]
    finished = [result.metrics for result in grid if not result.error and result.metrics]
    results = [
        {key: value for key, value in metrics.items() if key in _RESULT_KEYS}
        for metrics in finished
        if "test_accuracy" in metrics
    ]  # a trial ASHA stopped has no final result
    if config.sweep.search == "grid":
        for result in results:  # every grid point a training stands for
            result["grid_points"] = trainings.get(result["training"], [])
    with written_whole(run.sweep / "results.json", folder=False, replace=True) as staging:
        staging.write_text(json.dumps(results, indent=2))
    run.update_summary(
        "sweep", {"trials": len(grid), "failed": len(failed), "stopped_early": len(finished) - len(results)}
    )
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(grid)} sweep trials failed; first error: {failed[0]}")
    return results
