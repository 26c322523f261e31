"""The stages in order, each reading and writing the run directory; a stage whose output exists is skipped."""

from __future__ import annotations

import logging

from raydsbs.config import Config
from raydsbs.data.corpus import write_corpus
from raydsbs.rundir import RunDir
from raydsbs.storage import Location

logger = logging.getLogger(__name__)


def stage_generate(config: Config, run: RunDir) -> dict:
    from raydsbs.teacher.pipeline import generate

    write_corpus(config.task, run, config.ray)
    return generate(config, run)


def stage_train(config: Config, run: RunDir) -> Location:
    from raydsbs.student.launcher import train_student

    write_corpus(config.task, run, config.ray)
    return train_student(config, run)


def stage_evaluate(config: Config, run: RunDir) -> dict:
    from raydsbs.evaluate import evaluate_student

    return evaluate_student(config, run, stage_train(config, run))


def stage_baselines(config: Config, run: RunDir) -> dict:
    """The untrained student and the trivial floor, the lines every student is read against."""
    from raydsbs.evaluate import write_baselines

    write_corpus(config.task, run, config.ray)
    return write_baselines(config, run)


def stage_sweep(config: Config, run: RunDir) -> tuple[Location, str]:
    """The teacher's outputs (when a swept method needs them), every trial, the baselines, then the report."""
    from raydsbs.sweep import sweep

    write_corpus(config.task, run, config.ray)
    _teacher_if_needed(config, run)
    sweep(config, run)
    stage_baselines(config, run)
    return stage_report(config, run)


def stage_report(config: Config, run: RunDir) -> tuple[Location, str]:
    from raydsbs.report import write_report

    return write_report(config, run)


def _teacher_if_needed(config: Config, run: RunDir) -> None:
    from raydsbs.student.batching import needs_teacher

    methods = [config.train.method, *config.sweep.grid.get("train.method", [])]
    if any(needs_teacher(method) for method in methods):
        stage_generate(config, run)


def run_all(config: Config, run: RunDir) -> tuple[Location, str]:
    """generate -> train -> evaluate -> sweep -> baselines -> report."""
    _teacher_if_needed(config, run)
    stage_evaluate(config, run)
    if config.sweep.grid:
        return stage_sweep(config, run)
    stage_baselines(config, run)
    return stage_report(config, run)
