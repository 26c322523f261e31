"""The per-worker training loop, run by every Ray Train worker (or as a plain function, without Ray).

setup (data, model, DDP or DeepSpeed) -> multi-task micro-steps -> every
``train.eval_every_steps`` optimizer steps and at each epoch's end: the
validation label loss, reported with a checkpoint, so the best one can be
picked on validation and a restarted worker continues from the latest.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from raydsbs.config import Config
from raydsbs.progress import ProgressLine, log_from_worker
from raydsbs.rundir import RunDir
from raydsbs.student.batching import collate, student_format
from raydsbs.student.ingest import EncodedRows, EpochPlan, TrainRows
from raydsbs.student.learner import Learner, Progress, use_worker_cores
from raydsbs.student.lora import add_adapters
from raydsbs.student.model import build_student, save_student, student_kind
from raydsbs.student.tokenized import training_data
from raydsbs.student.tokenizer import load_tokenizer
from raydsbs.tracking import TrainingLog

logger = logging.getLogger(__name__)

SELECTION_METRIC = "val_label_loss"  # model selection looks at validation only, never test
Report = Callable[[dict, "Path | None"], None]  # (metrics, checkpoint folder of this rank or None)
StepLog = Callable[[int, dict], None]  # (optimizer step, this rank's mean losses over the step's micro-batches)


def _mean_over_workers(total: float, count: int) -> float:
    import torch.distributed as dist

    values = torch.tensor([total, float(count)], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return (values[0] / values[1].clamp(min=1)).item()


class WorkerSetup:
    """Everything one worker needs to train: data, format, learner, and the batches of each epoch."""

    def __init__(self, config: Config, run: RunDir, rank: int, world: int, distributed: bool, device: torch.device):
        self.config, self.rank, self.world = config, rank, world
        self.tokenizer = load_tokenizer(config.student, run.tokenizer)
        kind = student_kind(config.student)
        self.format = student_format(config.student, kind)
        self.train_set, self.val_set = training_data(config, run, self.tokenizer, self.format)
        torch.manual_seed(config.train.seed)  # the same initial weights on every rank and every rerun
        model = build_student(config.student, self.tokenizer, config.train)
        if config.student.lora:
            model = add_adapters(model, config.student.lora, kind)
        self.start_id = model.config.decoder_start_token_id if kind == "seq2seq" else None
        self.learner = Learner(model, config.train, distributed, device)

    def batches(self, examples: TrainRows | EncodedRows, seed: int) -> EpochPlan:
        lengths = examples.lengths() if self.config.train.length_bucketing else None
        return EpochPlan(len(examples), self.config.train.batch_size, self.rank, self.world, seed, lengths)

    def collate(self, examples: TrainRows | EncodedRows, indices: list[int]) -> dict:
        return collate([examples[i] for i in indices], self.format, self.tokenizer.pad_token_id, self.start_id)

    def validation_label_loss(self) -> float:
        self.learner.train(False)
        total, count = 0.0, 0
        with torch.no_grad():
            for indices in self.batches(self.val_set, seed=0):
                label_loss, _ = self.learner.losses(self.collate(self.val_set, indices))
                total, count = total + label_loss.item() * len(indices), count + len(indices)
        self.learner.train(True)
        return _mean_over_workers(total, count)

    def save_model(self, model, folder: Path, state_dict: dict | None = None) -> None:
        save_student(model, self.tokenizer, folder, self.format, state_dict)


class RunningMeans:
    """Mean train losses since the last report (or the last optimizer step)."""

    def __init__(self):
        self.sums, self.count = [0.0, 0.0, 0.0], 0

    def add(self, losses: tuple[float, float, float]) -> None:
        self.sums = [s + v for s, v in zip(self.sums, losses, strict=True)]
        self.count += 1

    def pop(self) -> dict:
        loss, label, rationale = (s / max(1, self.count) for s in self.sums)
        self.__init__()
        return {"train_loss": loss, "train_label_loss": label, "train_rationale_loss": rationale}


def fit(
    config: Config,
    run: RunDir,
    report: Report,
    rank: int = 0,
    world: int = 1,
    resume_from: Path | None = None,
    distributed: bool = False,
    device: torch.device | None = None,
    log_step: StepLog | None = None,
) -> None:
    """Train the student of ``config``; at each checkpoint ``report(metrics, folder)``, and on rank 0 at each
    optimizer step ``log_step(step, losses)``.

    Runs as a plain function (one process, no Ray) or inside a Ray Train worker
    (``distributed=True``: DDP or DeepSpeed across the workers).
    """
    use_worker_cores(config.train)
    trainer = WorkerSetup(config, run, rank, world, distributed, device or torch.device("cpu"))
    learner, train = trainer.learner, config.train
    progress = learner.restore(resume_from) if resume_from else Progress()
    means, step_means = RunningMeans(), RunningMeans()

    def checkpoint(next_epoch: int, next_batch: int) -> None:
        metrics = {
            **means.pop(),
            "epoch": next_epoch if next_batch else next_epoch - 1,
            "step": progress.optimizer_steps,
            "examples": len(trainer.train_set),
            "rationales": trainer.train_set.rationales(),
            SELECTION_METRIC: trainer.validation_label_loss(),
        }
        if rank == 0:
            logger.info(
                "step %05d | epoch %03d | loss %.4f | label %.4f | rationale %.4f | val label %.4f",
                metrics["step"],
                metrics["epoch"],
                metrics["train_loss"],
                metrics["train_label_loss"],
                metrics["train_rationale_loss"],
                metrics[SELECTION_METRIC],
            )
        with tempfile.TemporaryDirectory() as folder:
            state = Progress(next_epoch, next_batch, progress.optimizer_steps)
            learner.save(Path(folder), state, rank, trainer.save_model)
            report(metrics, Path(folder) if learner.writes_checkpoint(rank) else None)

    epochs = train.epochs
    batches_per_epoch = len(trainer.batches(trainer.train_set, seed=0))  # the same in every epoch
    if train.max_steps:  # as many passes as the step budget takes
        if progress.optimizer_steps >= train.max_steps:  # restarted after its last checkpoint
            return
        epochs = math.ceil(train.max_steps * train.gradient_accumulation_steps / batches_per_epoch)
    total_steps = train.max_steps or epochs * batches_per_epoch // train.gradient_accumulation_steps
    steps = ProgressLine("train", "step", total_steps, done=progress.optimizer_steps, log=logger.info)
    for epoch in range(progress.epoch, epochs):
        batches = trainer.batches(trainer.train_set, seed=train.seed * 1000 + epoch)
        first = progress.batch if epoch == progress.epoch else 0
        for index in range(first, len(batches)):
            micro = epoch * len(batches) + index  # counts micro-batches across epochs, the same on every rank
            boundary = (micro + 1) % train.gradient_accumulation_steps == 0
            losses = learner.micro_step(trainer.collate(trainer.train_set, batches[index]), boundary)
            means.add(losses)
            step_means.add(losses)
            if not boundary:
                continue
            progress.optimizer_steps += 1
            step_losses = step_means.pop()
            if rank == 0:  # the other ranks count the same steps
                steps.advance()
                if log_step:
                    log_step(progress.optimizer_steps, step_losses)
            last_batch = index + 1 == len(batches)
            if progress.optimizer_steps == train.max_steps:  # the budget ends here, maybe mid-epoch
                next_epoch, next_batch = (epoch + 1, 0) if last_batch else (epoch, index + 1)
                checkpoint(next_epoch, next_batch)
                if rank == 0:
                    steps.finish()
                return
            if train.eval_every_steps and progress.optimizer_steps % train.eval_every_steps == 0 and not last_batch:
                checkpoint(epoch, index + 1)
        checkpoint(epoch + 1, 0)
    if rank == 0:
        steps.finish()


def train_loop_per_worker(loop_config: dict) -> None:
    """Entry point of each Ray Train worker; ``loop_config`` holds the resolved config and the run dir."""
    import ray.train
    import ray.train.torch

    log_from_worker()
    context = ray.train.get_context()
    config, run = Config.model_validate(loop_config["config"]), RunDir(loop_config["run_dir"])
    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_from:
        if resume_from:
            logger.info("rank %d resumes from %s", context.get_world_rank(), resume_from)
        resumed_step = Progress.of_checkpoint(Path(resume_from)).optimizer_steps if resume_from else 0
        log = TrainingLog(config, run, loop_config["training"], context.get_world_rank(), resumed_step)

        def report(metrics: dict, folder: Path | None) -> None:
            log.checkpoint(metrics)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder) if folder else None)

        fit(
            config,
            run,
            report,
            rank=context.get_world_rank(),
            world=context.get_world_size(),
            distributed=True,
            resume_from=Path(resume_from) if resume_from else None,
            device=ray.train.torch.get_device(),
            log_step=log.step,
        )
    log.close()
