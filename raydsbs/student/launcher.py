"""Launching one student training on Ray Train (``TorchTrainer``, DDP or DeepSpeed ZeRO)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq

from raydsbs.config import Config, TrainConfig, config_hash, to_yaml
from raydsbs.ray_session import start_ray
from raydsbs.resolve import with_overrides
from raydsbs.rundir import RunDir
from raydsbs.staging import committed, written_whole
from raydsbs.storage import Location
from raydsbs.student.batching import needs_teacher, student_format
from raydsbs.student.learner import MODEL_SUBDIR, Progress
from raydsbs.student.lora import ADAPTER_SUBDIR
from raydsbs.student.model import build_student, pretrained_source, save_student, student_kind
from raydsbs.student.presets import PRESETS
from raydsbs.student.tokenized import prepare_tokenized
from raydsbs.student.tokenizer import TOKENIZER_SAMPLE_ROWS, load_tokenizer, train_tokenizer
from raydsbs.student.train_loop import SELECTION_METRIC, train_loop_per_worker
from raydsbs.tracking import worker_env

logger = logging.getLogger(__name__)


# The train keys each method ignores: λ weighs a second task only step_by_step has, and the label source
# only matters beside the teacher's rationales.
IGNORED_KEYS = {
    "step_by_step": (),
    "cot_finetune": ("rationale_weight",),
    "standard_finetune": ("rationale_weight", "label_source"),
    "standard_distill": ("rationale_weight", "label_source"),
}


def without_ignored_keys(config: Config) -> Config:
    """The config with the keys its method ignores set to their defaults, so a sweep over λ trains each
    other method once, not once per λ."""
    ignored = IGNORED_KEYS[config.train.method]
    if not ignored:
        return config
    defaults = TrainConfig()
    return with_overrides(config, {f"train.{key}": getattr(defaults, key) for key in ignored})


def training_name(config: Config) -> str:
    """A readable, unique folder name for one training: method, fraction, λ (step_by_step), seed, a hash."""
    train = without_ignored_keys(config).train
    digest = config_hash(Config(student=config.student, train=train), length=6)  # eval.* re-scores, never retrains
    weight = f"-l{train.rationale_weight:g}" if train.method == "step_by_step" else ""
    return f"{train.method}-f{train.train_fraction:g}{weight}-s{train.seed}-{digest}"


def prepare_tokenizer(config: Config, run: RunDir) -> None:
    """Train the run's tokenizer once, from a bounded sample of its texts (a pretrained student brings its own)."""
    if pretrained_source(config.student) or committed(run.tokenizer):
        return
    train_tokenizer(_tokenizer_texts(run), config.student.vocab_size, run.tokenizer)


def _tokenizer_texts(run: RunDir):
    """The first TOKENIZER_SAMPLE_ROWS train rows' questions and labels, then as many of the teacher's
    rationales and labels, read a row group at a time: the sample, not the corpus, bounds the memory."""
    sources = [(run.corpus_file("train"), ("question", "gold"))]
    if run.distill_file.is_file():
        sources.append((run.distill_file, ("rationale", "teacher_label")))
    for file, columns in sources:
        left = TOKENIZER_SAMPLE_ROWS
        for batch in pq.ParquetFile(file.path, filesystem=file.fs).iter_batches(columns=list(columns)):
            batch = batch.slice(0, left)
            for first, second in zip(*(batch.column(name).to_pylist() for name in columns), strict=True):
                yield first
                yield second
            left -= batch.num_rows
            if left <= 0:
                break


def prepare_training_data(config: Config, run: RunDir) -> None:
    """The run's tokenizer and the tokenized examples of ``config``'s training, made once on the driver: the
    workers (and the other trials of a sweep over the same rows) read them instead of each tokenizing."""
    if needs_teacher(config.train.method) and not run.distill_file.is_file():
        raise FileNotFoundError(
            f"{config.train.method} needs the teacher's outputs ({run.distill_file}); run `raydsbs generate` first"
        )
    prepare_tokenizer(config, run)
    fmt = student_format(config.student, student_kind(config.student))
    prepare_tokenized(config, run, load_tokenizer(config.student, run.tokenizer), fmt)


def warn_if_undersized(config: Config) -> None:
    """Say so when a pretrained preset gets fewer GPUs or a lower ZeRO stage than its full size needs."""
    preset = PRESETS[config.student.preset]
    if config.student.pretrained or not preset.gpus:
        return
    gpus = config.train.num_workers if config.train.use_gpu else 0
    if gpus < preset.gpus or config.train.zero_stage < preset.zero_stage:
        logger.warning(
            "student preset %s (%s parameters) is sized for %d GPU(s) with ZeRO stage %d%s; this run has "
            "%d GPU(s) and ZeRO stage %d",
            config.student.preset,
            preset.parameters,
            preset.gpus,
            preset.zero_stage,
            f" ({preset.note})" if preset.note else "",
            gpus,
            config.train.zero_stage,
        )


def _write_merged(config: Config, run: RunDir, adapter: Path, target: Path) -> None:
    """The pretrained student with the adapters in ``adapter`` merged in, saved as a model folder at ``target``."""
    from raydsbs.student.lora import merge_adapters

    tokenizer = load_tokenizer(config.student, run.tokenizer)
    base = build_student(config.student, tokenizer)
    fmt = student_format(config.student, student_kind(config.student))
    save_student(merge_adapters(base, adapter), tokenizer, target, fmt)


def train_student(config: Config, run: RunDir, report_to_tune: bool = False) -> Location:
    """Train (or find already trained) the student of ``config``; returns its folder with ``model/``.

    ``report_to_tune``: inside a Tune trial, relay each checkpoint's metrics to Tune (for its scheduler).
    """
    config = without_ignored_keys(config)
    folder = run.training(training_name(config))
    if committed(folder / MODEL_SUBDIR):
        logger.info("student %s exists; skipping training", folder.name)
        return folder
    prepare_training_data(config, run)
    warn_if_undersized(config)
    start_ray(config.ray)
    started = time.monotonic()
    result = _torch_trainer(config, run, folder.name, report_to_tune).fit()
    selected = _keep_selected(config, run, folder, result, seconds=round(time.monotonic() - started, 1))
    logger.info(
        "student %s trained; the checkpoint after %d optimizer steps selected on %s",
        folder.name,
        selected["optimizer_steps"],
        SELECTION_METRIC,
    )
    return folder


def _torch_trainer(config: Config, run: RunDir, name: str, report_to_tune: bool):
    """The Ray Train run of one training: its workers, checkpoints (the best two kept) and failures."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config.model_dump(mode="json"), "run_dir": str(run.root), "training": name},
        scaling_config=ScalingConfig(
            num_workers=config.train.num_workers,
            use_gpu=config.train.use_gpu,
            resources_per_worker={"CPU": config.train.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=name,
            # Ray starts workers at nice 15; a training worker is the stage's whole work and runs at the normal
            # priority, as the teacher's engine does (it lost CPU to Ray's own processes otherwise).
            worker_runtime_env={"env_vars": {"RAY_worker_niceness": "0", **worker_env(config)}},
            storage_path=(run.student / "ray").path,
            storage_filesystem=run.root.fs,
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=SELECTION_METRIC, checkpoint_score_order="min"
            ),
            failure_config=FailureConfig(max_failures=config.train.max_failures),
            callbacks=[TuneReportCallback()] if report_to_tune else None,
        ),
    )


def _keep_selected(config: Config, run: RunDir, folder: Location, result, seconds: float) -> dict:
    """Write the training's folder from a finished Ray Train run: its config, training.json, then model/ (the
    checkpoint with the lowest validation label loss; a LoRA student merged) last, whole, as it marks the
    training done. Returns the selected checkpoint's state."""
    best = result.get_best_checkpoint(metric=SELECTION_METRIC, mode="min")
    history = [metrics for _, metrics in result.best_checkpoints or []]
    with result.checkpoint.as_directory() as latest:
        final_step = Progress.of_checkpoint(Path(latest)).optimizer_steps
    counts = {key: history[-1].get(key) for key in ("examples", "rationales")} if history else {}
    folder.mkdir()
    (folder / "config.yaml").write_text(to_yaml(config))
    with best.as_directory() as checkpoint:
        checkpoint = Path(checkpoint)
        selected = asdict(Progress.of_checkpoint(checkpoint))
        summary = {"selected": selected, "final_step": final_step, "seconds": seconds, **counts}
        summary["kept_checkpoints"] = history
        with written_whole(folder / "training.json", folder=False, replace=True) as staging:
            staging.write_text(json.dumps(summary, indent=2))
        with written_whole(folder / MODEL_SUBDIR, replace=True) as staging:
            if (checkpoint / ADAPTER_SUBDIR).is_dir():  # LoRA: model/ is the student with its adapters merged in
                with written_whole(folder / ADAPTER_SUBDIR, replace=True) as adapter:
                    shutil.copytree(checkpoint / ADAPTER_SUBDIR, adapter, dirs_exist_ok=True)
                _write_merged(config, run, checkpoint / ADAPTER_SUBDIR, staging)
            else:
                shutil.copytree(checkpoint / MODEL_SUBDIR, staging, dirs_exist_ok=True)
    return selected
