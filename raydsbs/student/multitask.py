"""The multi-task loss of Distilling Step-by-Step, around any Hugging Face student.

    loss = label_loss + λ · rationale_loss

Each task's loss is the mean token cross-entropy over that task's scored
tokens, as a separate forward pass per task computes it. The paper's code
writes the same thing as α · label + (1 − α) · rationale; α = 0.5 there is
λ = 1 here, with the loss scaled by 2.
"""

from __future__ import annotations

import torch

from raydsbs.student.batching import TASKS


def multitask_loss(label_loss: torch.Tensor, rationale_loss: torch.Tensor, rationale_weight: float) -> torch.Tensor:
    return label_loss + rationale_weight * rationale_loss


class MultiTaskModel(torch.nn.Module):
    """One module whose forward gives both task losses, so DDP and DeepSpeed see one forward per step.

    With a shared encoder (``batch["encoder"]``, output task markers) a
    seq2seq student encodes each question once and decodes both targets from
    it; otherwise each task is its own forward pass.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(label_loss, rationale_loss); the rationale loss is 0 for a batch without rationales."""
        shared = {}
        if "encoder" in batch:
            encoder = batch["encoder"]
            shared = {"encoder_outputs": self.model.get_encoder()(**encoder),
                      "attention_mask": encoder["attention_mask"]}
        losses = {task: self.model(**batch[task], **shared).loss for task in TASKS if task in batch}
        label_loss = losses["label"]
        return label_loss, losses.get("rationale", torch.zeros((), device=label_loss.device))
