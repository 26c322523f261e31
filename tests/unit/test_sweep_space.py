"""What a sweep asks Tune for: grid or random search spaces, the scheduler, and configs that cannot work."""

from __future__ import annotations

import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.sample import Categorical, Float, LogUniform

from raydsbs.config import ConfigError
from raydsbs.resolve import load_config
from raydsbs.sweep import check_grid, distinct_trainings, param_space, tune_config


def test_grid_search_is_every_combination():
    config = load_config(
        None, ["sweep.grid={train.method: [step_by_step, standard_finetune], train.train_fraction: [0.5, 1.0]}"]
    )
    space = param_space(config)
    assert space == {
        "grid_point": tune.grid_search(
            [
                {"train.method": method, "train.train_fraction": fraction}
                for method in ("step_by_step", "standard_finetune")
                for fraction in (0.5, 1.0)
            ]
        )
    }
    tc = tune_config(config)
    assert tc.num_samples == 1 and tc.scheduler is None


def test_grid_points_that_name_the_same_training_are_one_trial():
    config = load_config(
        None,
        [
            "sweep.grid={train.method: [step_by_step, standard_finetune, standard_distill], "
            "train.label_source: [gold, teacher], train.seed: [0, 1]}"
        ],
    )
    trainings = distinct_trainings(config)
    assert sum(len(points) for points in trainings.values()) == 12 and len(trainings) == 8
    finetune = [points for name, points in trainings.items() if name.startswith("standard_finetune-f1-s0-")]
    assert finetune == [
        [
            {"train.method": "standard_finetune", "train.label_source": label, "train.seed": 0}
            for label in ("gold", "teacher")
        ]
    ]
    assert len(param_space(config)["grid_point"]["grid_search"]) == 8


def test_random_search_draws_from_lists_and_ranges():
    config = load_config(
        None,
        [
            "sweep.search=random",
            "sweep.num_samples=5",
            "sweep.grid={train.method: [step_by_step, standard_distill]}",
            "sweep.ranges={train.rationale_weight: {low: 0.1, high: 10, log: true}, "
            "train.learning_rate: {low: 0.001, high: 0.005}}",
        ],
    )
    space = param_space(config)
    assert isinstance(space["train.method"], Categorical)
    assert space["train.method"].categories == ["step_by_step", "standard_distill"]
    weight, rate = space["train.rationale_weight"], space["train.learning_rate"]
    assert isinstance(weight, Float) and isinstance(weight.get_sampler(), LogUniform)
    assert (weight.lower, weight.upper) == (0.1, 10.0) and (rate.lower, rate.upper) == (0.001, 0.005)
    assert tune_config(config).num_samples == 5


def test_asha_watches_the_validation_loss_reported_at_each_checkpoint():
    scheduler = tune_config(load_config(None, ["sweep.scheduler=asha", "sweep.grace_reports=3"])).scheduler
    assert isinstance(scheduler, ASHAScheduler)
    assert scheduler.metric == "val_label_loss" and scheduler._mode == "min"
    assert min(milestone for milestone, _ in scheduler._brackets[0]._rungs) == 3  # the first rung: 3 reports


def test_ranges_without_random_search_and_out_of_range_bounds_are_refused():
    with pytest.raises(ConfigError, match="sweep.search=random"):
        load_config(None, ["sweep.ranges={train.rationale_weight: {low: 0.1, high: 1}}"])
    with pytest.raises(ConfigError, match="low > 0"):
        load_config(None, ["sweep.search=random", "sweep.ranges={train.learning_rate: {low: 0, high: 1, log: true}}"])
    config = load_config(None, ["sweep.search=random", "sweep.ranges={train.train_fraction: {low: 0.5, high: 2}}"])
    with pytest.raises(ConfigError, match="train_fraction"):  # 2 is not a valid fraction: said before anything runs
        check_grid(config)


@pytest.mark.parametrize(
    "key, values, stage", [("task.num_train", [100, 200], "corpus"), ("teacher.samples", [1, 3], "teacher")]
)
def test_a_sweep_over_what_its_trials_share_is_refused_before_anything_runs(key, values, stage):
    config = load_config(None, [f"sweep.grid={{{key}: {values}}}"])
    with pytest.raises(ConfigError, match=f"sweep.grid.{key}: changes the run's {stage}"):
        check_grid(config)
    check_grid(load_config(None, ["sweep.grid={teacher.replicas: [1, 2], train.seed: [0, 1]}"]))
