"""Shared split logic of the tasks whose data are the paper's released files."""

from __future__ import annotations

import random

from raydsbs.config import TaskConfig
from raydsbs.data.released import read_ground_truth, released_id
from raydsbs.tasks.base import Example, Task


class ReleasedTask(Task):
    """Train and val come from the released train file (a seeded split), test from its test file."""

    def to_example(self, row: dict, example_id: str) -> Example:
        raise NotImplementedError

    def load_splits(self, config: TaskConfig) -> dict[str, list[Example]]:
        train = [self.to_example(row, released_id(self.name, "train", i))
                 for i, row in enumerate(read_ground_truth(config.data_dir, self.name, "train"))]
        test = [self.to_example(row, released_id(self.name, "test", i))
                for i, row in enumerate(read_ground_truth(config.data_dir, self.name, "test"))]
        random.Random(config.seed).shuffle(train)
        num_val = min(config.num_val, len(train) // 2)
        return {
            "train": sorted(train[num_val:][: config.num_train], key=lambda e: e.id),
            "val": sorted(train[:num_val], key=lambda e: e.id),
            "test": test[: config.num_test],
        }
