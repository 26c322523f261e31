"""The per-worker training loop, run by every Ray Train worker.

setup (data, model, DDP or DeepSpeed) -> epochs of multi-task steps -> after
each epoch the validation label loss, reported to Ray Train with a checkpoint
(a Hugging Face model folder) so the best epoch can be picked on validation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import torch

from raydsbs.config import Config
from raydsbs.rundir import RunDir
from raydsbs.student.batching import (TrainingExample, collate, encode, epoch_batches, needs_teacher, subsample,
                                      training_examples)
from raydsbs.student.loss import multitask_loss, task_mean_losses
from raydsbs.student.model import build_student
from raydsbs.student.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

MODEL_SUBDIR = "model"  # inside each checkpoint: a from_pretrained-loadable folder
EPOCH_FILE = "epoch.txt"
SELECTION_METRIC = "val_label_loss"  # model selection looks at validation only, never test


def deepspeed_config(config: Config) -> dict:
    """The DeepSpeed config of a ZeRO stage (1-3), from the train section."""
    train = config.train
    return {
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": train.use_gpu},  # T5 overflows in fp16; bf16 only where the hardware has it
        "steps_per_print": 10**9,
    }


def _read(path: Path) -> list[dict]:
    """Rows in id order (the teacher writes its outputs as they stream), so subsampling is reproducible."""
    return pq.read_table(path).sort_by("id").to_pylist()


def load_training_data(config: Config, run: RunDir, tokenizer):
    """(train examples encoded, val examples encoded): the method's rows, subsampled, and gold-labelled val."""
    distill = _read(run.distill_file) if needs_teacher(config.train.method) else []
    examples = training_examples(config.train.method, config.train.label_source, _read(run.corpus_file("train")), distill)
    if not examples:
        raise ValueError(f"no training rows for method {config.train.method}: the teacher kept no rows in {run.distill_file}")
    examples = subsample(examples, config.train.train_fraction, config.train.seed)
    val = [TrainingExample(row["question"], row["gold"]) for row in _read(run.corpus_file("val"))]
    return encode(examples, tokenizer, config.student), encode(val, tokenizer, config.student)


class Learner:
    """The model with its optimizer: plain torch (one process), DDP, or a DeepSpeed ZeRO engine."""

    def __init__(self, model, config: Config, distributed: bool):
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate,
                                      weight_decay=config.train.weight_decay)
        self.zero_stage = config.train.zero_stage
        if self.zero_stage:
            import deepspeed

            # A torch optimizer: DeepSpeed's own CPU Adam would compile C++ first.
            self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=deepspeed_config(config))
            self.module = self.engine.module
        else:
            if distributed:
                import ray.train.torch

                model = ray.train.torch.prepare_model(model)  # DDP across the Ray Train workers
            self.engine = model
            self.module = getattr(model, "module", model)
            self.optimizer = optimizer

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(label_loss, rationale_loss) of one batch."""
        device = next(self.module.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = self.engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             labels=batch["labels"]).logits
        return task_mean_losses(logits, batch["labels"], batch["task_ids"])

    def step(self, loss: torch.Tensor) -> None:
        if self.zero_stage:
            self.engine.backward(loss)
            self.engine.step()
            return
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.engine.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train(self, mode: bool) -> None:
        self.engine.train(mode)

    def save(self, folder: Path, is_writer: bool) -> None:
        """A full Hugging Face model folder; under ZeRO-3 the shards are gathered first (all ranks call this)."""
        if self.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                if is_writer:
                    self.module.save_pretrained(folder)
        elif is_writer:
            self.module.save_pretrained(folder)

    def restore(self, checkpoint: Path) -> int:
        """Load the weights of a checkpoint folder; returns the epoch to continue from."""
        from transformers import AutoModelForSeq2SeqLM

        saved = AutoModelForSeq2SeqLM.from_pretrained(checkpoint / MODEL_SUBDIR).state_dict()
        if self.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=0):
                self.module.load_state_dict(saved)
        else:
            self.module.load_state_dict(saved)
        return int((checkpoint / EPOCH_FILE).read_text()) + 1


def _mean_over_workers(total: float, count: int) -> float:
    import torch.distributed as dist

    values = torch.tensor([total, float(count)], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return (values[0] / values[1].clamp(min=1)).item()


def validation_label_loss(learner: Learner, val, batch_size: int, pad_id: int, rank: int, world: int) -> float:
    learner.train(False)
    total, count = 0.0, 0
    with torch.no_grad():
        for indices in epoch_batches(len(val), batch_size, rank, world, seed=0):
            label_loss, _ = learner.forward(collate([val[i] for i in indices], pad_id))
            total, count = total + label_loss.item() * len(indices), count + len(indices)
    learner.train(True)
    return _mean_over_workers(total, count)


def fit(config: Config, run: RunDir, report: Callable[[dict, Path], None], rank: int = 0, world: int = 1,
        resume_from: Path | None = None, distributed: bool = False) -> None:
    """Train the student of ``config``; after each epoch ``report(metrics, checkpoint_folder)``.

    Runs as a plain function (one process, no Ray) or inside a Ray Train worker
    (``distributed=True``: DDP or DeepSpeed across the workers).
    """
    torch.manual_seed(config.train.seed)
    torch.set_num_threads(max(1, math.floor(config.train.cpus_per_worker)))
    tokenizer = load_tokenizer(config.student, run.tokenizer)
    train, val = load_training_data(config, run, tokenizer)
    learner = Learner(build_student(config.student, tokenizer), config, distributed)
    first_epoch = learner.restore(resume_from) if resume_from else 0
    train_cfg = config.train
    for epoch in range(first_epoch, train_cfg.epochs):
        for step, indices in enumerate(epoch_batches(len(train), train_cfg.batch_size, rank, world,
                                                     seed=train_cfg.seed * 1000 + epoch)):
            label_loss, rationale_loss = learner.forward(collate([train[i] for i in indices], tokenizer.pad_token_id))
            loss = multitask_loss(label_loss, rationale_loss, train_cfg.rationale_weight)
            learner.step(loss)
        val_loss = validation_label_loss(learner, val, train_cfg.batch_size, tokenizer.pad_token_id, rank, world)
        metrics = {"epoch": epoch, "train_loss": loss.item(), "train_label_loss": label_loss.item(),
                   "train_rationale_loss": rationale_loss.item(), SELECTION_METRIC: val_loss}
        if rank == 0:
            logger.info("epoch %03d | loss %.4f | label %.4f | rationale %.4f | val label %.4f",
                        epoch, loss.item(), label_loss.item(), rationale_loss.item(), val_loss)
        with tempfile.TemporaryDirectory() as folder:
            learner.save(Path(folder) / MODEL_SUBDIR, is_writer=rank == 0)
            (Path(folder) / EPOCH_FILE).write_text(str(epoch))
            report(metrics, Path(folder))


def train_loop_per_worker(loop_config: dict) -> None:
    """Entry point of each Ray Train worker; ``loop_config`` holds the resolved config and the run dir."""
    import ray.train

    context = ray.train.get_context()
    rank = context.get_world_rank()

    def report(metrics: dict, folder: Path) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if rank == 0 else None
        ray.train.report(metrics, checkpoint=checkpoint)

    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as resume_from:
        fit(Config.model_validate(loop_config["config"]), RunDir(loop_config["run_dir"]), report,
            rank=rank, world=context.get_world_size(), distributed=True,
            resume_from=Path(resume_from) if resume_from else None)
