"""The multi-task loss of Distilling Step-by-Step.

    loss = label_loss + λ · rationale_loss

Each task's loss is the mean token cross-entropy over that task's rows in the
batch, as a separate forward pass per task would compute it. The paper's code
writes the same thing as α · label + (1 − α) · rationale; α = 0.5 there is
λ = 1 here, with the loss scaled by 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LABEL_TASK, RATIONALE_TASK = 0, 1
IGNORE = -100


def task_mean_losses(logits: torch.Tensor, labels: torch.Tensor, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean token cross-entropy of the label rows and of the rationale rows.

    logits: [B, T, V]; labels: [B, T] with IGNORE on padding; task_ids: [B].
    A task with no rows in the batch has loss 0.
    """
    token_loss = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    counted = (labels != IGNORE).float()
    means = []
    for task in (LABEL_TASK, RATIONALE_TASK):
        rows = (task_ids == task).float().unsqueeze(1) * counted  # [B, T]
        means.append((token_loss * rows).sum() / rows.sum().clamp(min=1.0))
    return means[0], means[1]


def multitask_loss(label_loss: torch.Tensor, rationale_loss: torch.Tensor, rationale_weight: float) -> torch.Tensor:
    return label_loss + rationale_weight * rationale_loss
