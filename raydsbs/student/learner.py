"""The student with its optimizer: plain torch (one process), DDP, or a DeepSpeed ZeRO engine.

One interface for all three: ``micro_step`` (forward and backward of one
micro-batch, an optimizer step at each accumulation boundary), ``save`` and
``restore`` of a checkpoint folder that holds everything a resumed run needs::

    <checkpoint>/model/        the Hugging Face model folder (safetensors; ZeRO-3 shards gathered)
    <checkpoint>/adapter/      instead of model/ for a LoRA student: its adapters only (peft's folder)
    <checkpoint>/state.json    where training stands: the next epoch and batch, optimizer steps
    <checkpoint>/optimizer.pt  AdamW's state (plain torch and DDP)
    <checkpoint>/deepspeed/    DeepSpeed's own checkpoint, one file per rank (ZeRO)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from raydsbs.config import TrainConfig
from raydsbs.student.lora import ADAPTER_SUBDIR, has_adapters, load_adapter_weights
from raydsbs.student.multitask import MultiTaskModel, multitask_loss

MODEL_SUBDIR = "model"
STATE_FILE = "state.json"
DEEPSPEED_SUBDIR, DEEPSPEED_TAG = "deepspeed", "state"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Progress:
    """Where training stands: the next micro-batch to run, and optimizer steps taken."""

    epoch: int = 0
    batch: int = 0
    optimizer_steps: int = 0

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> Progress:
        return cls(**json.loads((checkpoint / STATE_FILE).read_text()))


def cpu_has_bf16() -> bool:
    """Whether this machine's CPU computes bf16 natively (avx512_bf16 or AMX): bf16 autocast then pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def gpu_has_bf16() -> bool:
    """Whether this machine's GPU computes bf16 natively (compute capability 8.0 and up)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def use_worker_cores(train: TrainConfig) -> None:
    """A worker (a training worker, a scoring actor) computes on every core it holds a part of: 1.8 CPUs are
    2 threads, 0.9 one."""
    torch.set_num_threads(max(1, math.ceil(train.cpus_per_worker)))


def compute_dtype(train: TrainConfig) -> str:
    """fp32, bf16 or fp16: ``train.precision``, with ``auto`` decided by this machine."""
    if train.precision != "auto":
        return train.precision
    return train.dtype_name(
        cpu_has_bf16=not train.use_gpu and cpu_has_bf16(), gpu_has_bf16=train.use_gpu and gpu_has_bf16()
    )


def deepspeed_config(train: TrainConfig) -> dict:
    """The DeepSpeed config of a ZeRO stage (1-3), from the train section."""
    zero: dict = {"stage": train.zero_stage}
    if train.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": train.use_gpu}
    if train.offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": train.use_gpu}
    dtype = compute_dtype(train)
    config = {
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == "bf16"},
        "fp16": {"enabled": dtype == "fp16"},
        "steps_per_print": 10**9,
    }
    if train.offload_optimizer:  # offloaded states want DeepSpeed's vectorised CPU Adam (compiled on first use)
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": train.learning_rate, "weight_decay": train.weight_decay},
        }
    return config


def _init_single_process_group(use_gpu: bool) -> None:
    """DeepSpeed needs torch.distributed even in one process (a plain run without Ray)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }.items():
        os.environ.setdefault(key, value)
    dist.init_process_group("nccl" if use_gpu else "gloo")


class Learner:
    """A :class:`MultiTaskModel` and its optimizer, wrapped for one process, DDP or DeepSpeed."""

    def __init__(self, model: torch.nn.Module, train: TrainConfig, distributed: bool, device: torch.device):
        self.train_config = train
        self.zero_stage = train.zero_stage
        self.dtype = DTYPES[compute_dtype(train)]
        self.lora = has_adapters(model)
        self.device = device
        self.scaler = None
        wrapper = MultiTaskModel(model)
        if self.zero_stage:
            import deepspeed

            if not distributed:
                _init_single_process_group(train.use_gpu)
            # A torch AdamW unless states are offloaded: DeepSpeed's CPU Adam compiles C++ first.
            optimizer = None if train.offload_optimizer else self._adamw(wrapper)
            trainable = [p for p in wrapper.parameters() if p.requires_grad]  # a LoRA student's adapters only
            self.engine, self.optimizer, *_ = deepspeed.initialize(
                model=wrapper, optimizer=optimizer, model_parameters=trainable, config=deepspeed_config(train)
            )
            self.module = self.engine.module.model
            self.device = self.engine.device
            return
        wrapper.to(device)
        self.optimizer = self._adamw(wrapper)
        if distributed:
            import ray.train.torch

            wrapper = ray.train.torch.prepare_model(wrapper, move_to_device=False)  # DDP across the workers
        self.engine = wrapper
        self.module = model
        if self.dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(device.type)

    def _adamw(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        trainable = [p for p in module.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            trainable, lr=self.train_config.learning_rate, weight_decay=self.train_config.weight_decay
        )

    def _to_device(self, batch: dict) -> dict:
        return {task: {k: v.to(self.device) for k, v in tensors.items()} for task, tensors in batch.items()}

    def losses(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(label_loss, rationale_loss) of one batch, in the configured precision."""
        autocast = self.zero_stage == 0 and self.dtype != torch.float32  # DeepSpeed casts the model itself
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            return self.engine(self._to_device(batch))

    def micro_step(self, batch: dict, boundary: bool) -> tuple[float, float, float]:
        """Forward and backward of one micro-batch; an optimizer step when ``boundary``. Returns the losses."""
        accumulation = self.train_config.gradient_accumulation_steps
        if self.zero_stage:
            self.engine.set_gradient_accumulation_boundary(boundary)
            label_loss, rationale_loss = self.losses(batch)
            loss = multitask_loss(label_loss, rationale_loss, self.train_config.rationale_weight)
            self.engine.backward(loss)  # scales by 1/accumulation itself
            self.engine.step()
            return loss.item(), label_loss.item(), rationale_loss.item()
        no_sync = getattr(self.engine, "no_sync", None)
        with no_sync() if (no_sync and not boundary) else contextlib.nullcontext():  # all-reduce once per step
            label_loss, rationale_loss = self.losses(batch)
            loss = multitask_loss(label_loss, rationale_loss, self.train_config.rationale_weight)
            scaled = loss / accumulation  # each backward() adds to the gradients
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        if boundary:
            self._optimizer_step()
        return loss.item(), label_loss.item(), rationale_loss.item()

    def _optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.engine.parameters(), self.train_config.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train(self, mode: bool) -> None:
        self.engine.train(mode)

    def writes_checkpoint(self, rank: int) -> bool:
        """Whether this rank has files in a checkpoint (every rank under ZeRO: its shard of the states)."""
        return bool(self.zero_stage) or rank == 0

    def _gathered_weights(self, rank: int) -> dict | None:
        """ZeRO-3: the whole model's weights, gathered one parameter at a time and kept (in CPU memory) by
        rank 0 alone, so no rank holds more than its shards and one whole parameter on its device."""
        import deepspeed

        weights = {}
        for name, parameter in self.module.named_parameters():
            with deepspeed.zero.GatheredParameters([parameter], modifier_rank=None):
                if rank == 0:
                    weights[name] = parameter.detach().to("cpu", copy=True)
        return weights if rank == 0 else None

    def save(self, folder: Path, progress: Progress, rank: int, save_model) -> None:
        """Write a checkpoint folder (all ranks call this); ``save_model(model, path, weights)`` writes model/ on
        rank 0 (``weights`` None: the model's own)."""
        folder.mkdir(parents=True, exist_ok=True)
        weights = self._gathered_weights(rank) if self.zero_stage == 3 else None  # every rank takes part
        if rank == 0:
            save_model(self.module, folder / (ADAPTER_SUBDIR if self.lora else MODEL_SUBDIR), weights)
        if self.zero_stage:
            self.engine.save_checkpoint(
                str(folder / DEEPSPEED_SUBDIR),
                tag=DEEPSPEED_TAG,
                save_latest=False,
                exclude_frozen_parameters=self.lora,
            )
        elif rank == 0:
            torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        if rank == 0:
            (folder / STATE_FILE).write_text(json.dumps(asdict(progress)))

    def restore(self, checkpoint: Path) -> Progress:
        """Load weights and optimizer state of a checkpoint folder; returns where to continue."""
        if self.zero_stage:
            self.engine.load_checkpoint(
                str(checkpoint / DEEPSPEED_SUBDIR),
                tag=DEEPSPEED_TAG,
                load_optimizer_states=True,
                load_lr_scheduler_states=False,
                load_module_strict=not self.lora,
            )  # LoRA: the frozen weights are not in it
        else:
            if self.lora:
                load_adapter_weights(self.module, checkpoint / ADAPTER_SUBDIR)
            else:
                saved = type(self.module).from_pretrained(checkpoint / MODEL_SUBDIR)  # fills tied weights too
                self.module.load_state_dict(saved.state_dict())
            # onto this worker's device: the state was saved from whichever device rank 0 had
            state = torch.load(checkpoint / "optimizer.pt", map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(state)
        return Progress.of_checkpoint(checkpoint)
