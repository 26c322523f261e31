"""The multi-task loss of Distilling Step-by-Step, around any Hugging Face student.

    loss = label_loss + λ · rationale_loss

Each task's loss is the mean token cross-entropy over that task's scored
tokens, as a separate forward pass per task computes it. The paper's code
writes the same thing as α · label + (1 − α) · rationale; α = 0.5 there is
λ = 1 here, with the loss scaled by 2.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from raydsbs.student.batching import IGNORE, OBJECTIVES


def multitask_loss(label_loss: torch.Tensor, rationale_loss: torch.Tensor, rationale_weight: float) -> torch.Tensor:
    return label_loss + rationale_weight * rationale_loss


class MultiTaskModel(torch.nn.Module):
    """One module whose forward gives both task losses, so DDP and DeepSpeed see one forward per step.

    With a shared encoder (``batch["encoder"]``, output task markers) a
    seq2seq student encodes each question once and decodes both targets from
    it; a causal student with output markers reads one packed sequence
    (``batch["packed"]``) and scores each task's tokens in it; otherwise each
    task is its own forward pass.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a peft wrapper
        self.keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters

    def forward(self, batch: dict[str, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(label_loss, rationale_loss); the rationale loss is 0 for a batch without rationales."""
        losses = self._packed_losses(batch["packed"]) if "packed" in batch else self._task_losses(batch)
        label_loss = losses["label"]
        return label_loss, losses.get("rationale", torch.zeros((), device=label_loss.device))

    def _task_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        if "encoder" in batch:
            encoder = batch["encoder"]
            encoded = self.model.get_encoder()(**encoder).last_hidden_state
        losses = {}
        for task in OBJECTIVES:
            if task not in batch:
                continue
            inputs = dict(batch[task])
            rows = inputs.pop("rows", None)  # the encoder rows this task decodes (default: all)
            if "encoder" in batch:
                hidden, mask = (
                    (encoded, encoder["attention_mask"])
                    if rows is None
                    else (encoded[rows], encoder["attention_mask"][rows])
                )
                inputs.update(encoder_outputs=(hidden,), attention_mask=mask)
            losses[task] = self.model(**inputs).loss
        return losses

    def _packed_losses(self, packed: dict) -> dict[str, torch.Tensor]:
        targets = {task: packed[f"{task}_labels"] for task in OBJECTIVES}
        width = packed["input_ids"].shape[1]
        scored = torch.stack([(labels != IGNORE).any(0) for labels in targets.values()]).any(0)
        first = max(1, int(scored.nonzero()[0]))  # no logits before the first scored token's are needed
        keep = width - first + 1  # position p predicts token p + 1
        logits = self.model(
            input_ids=packed["input_ids"],
            position_ids=packed["position_ids"],
            attention_mask=self._block_mask(packed["attention_mask"]),
            **({"logits_to_keep": keep} if self.keeps_logits else {}),
        ).logits[:, -keep:-1]
        losses = {}
        for task, labels in targets.items():
            labels = labels[:, first:]
            if (labels != IGNORE).any():
                losses[task] = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        return losses

    def _block_mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """The [B, 1, L, L] mask as the model's attention takes it: bool for SDPA, additive for eager."""
        implementation = getattr(self.model.config, "_attn_implementation", "eager")
        if implementation == "sdpa":
            return allowed
        if implementation != "eager":
            raise ValueError(
                f"packed causal rows (student.task_marker=output) need sdpa or eager attention; this "
                f"student uses {implementation}: use student.task_marker=input"
            )
        dtype = next(self.model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
