"""The embedded tasks: seeded arithmetic word problems, written by the project itself, offline, in any size.

``arith`` (the default) needs one operation, which a pretrained 135M student learns in a minute
on a CPU::

    question: "Ava has 12 shells. She gives away 5. How many shells does Ava have left?"
    gold:     "7"

``arith2`` needs two, which it does not (without writing its reasoning out)::

    question: "Mia has 7 marbles. She buys 5 more. Then she gives 3 to Leo.
               How many marbles does Mia have now?"
    gold:     "9"

The teacher is asked to answer in the same style as its exemplars::

    "Mia starts with 7 marbles. After buying 5 more she has 7 + 5 = 12.
     After giving 3 away she has 12 - 3 = 9. So the answer is 9."
"""

from __future__ import annotations

import random

from raydsbs.config import TaskConfig
from raydsbs.tasks.answers import NumberAnswer
from raydsbs.tasks.base import SPLITS, Example, Task

NAMES = [
    ("Mia", "She"),
    ("Leo", "He"),
    ("Ava", "She"),
    ("Sam", "He"),
    ("Zoe", "She"),
    ("Max", "He"),
    ("Ivy", "She"),
    ("Ben", "He"),
    ("Emma", "She"),
    ("Noah", "He"),
    ("Lily", "She"),
    ("Omar", "He"),
]
ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "cards", "shells", "coins", "balloons"]


def _buy_more(rng: random.Random) -> tuple[str, int]:
    ((name, she),) = rng.sample(NAMES, 1)
    item, a, b = rng.choice(ITEMS), rng.randint(2, 20), rng.randint(2, 20)
    return f"{name} has {a} {item}. {she} buys {b} more. How many {item} does {name} have now?", a + b


def _give_away(rng: random.Random) -> tuple[str, int]:
    ((name, she),) = rng.sample(NAMES, 1)
    item, a = rng.choice(ITEMS), rng.randint(3, 24)
    b = rng.randint(1, a - 1)
    return f"{name} has {a} {item}. {she} gives away {b}. How many {item} does {name} have left?", a - b


def _boxes(rng: random.Random) -> tuple[str, int]:
    item, a, b = rng.choice(ITEMS), rng.randint(2, 6), rng.randint(2, 6)
    return f"There are {a} boxes with {b} {item} in each box. How many {item} are there in all?", a * b


def _share_out(rng: random.Random) -> tuple[str, int]:
    ((name, _),) = rng.sample(NAMES, 1)
    item, friends, each = rng.choice(ITEMS), rng.randint(2, 5), rng.randint(2, 6)
    return (
        f"{name} shares {friends * each} {item} equally among {friends} friends. How many {item} does each friend get?",
        each,
    )


def _add_then_give(rng: random.Random) -> tuple[str, int]:
    (name, she), (friend, _) = rng.sample(NAMES, 2)
    item, a, b = rng.choice(ITEMS), rng.randint(2, 12), rng.randint(2, 12)
    c = rng.randint(1, a + b - 1)
    return (
        f"{name} has {a} {item}. {she} buys {b} more. Then {she.lower()} gives {c} to {friend}. "
        f"How many {item} does {name} have now?",
        a + b - c,
    )


def _boxes_minus(rng: random.Random) -> tuple[str, int]:
    ((name, she),) = rng.sample(NAMES, 1)
    item, a, b = rng.choice(ITEMS), rng.randint(2, 6), rng.randint(2, 6)
    c = rng.randint(1, a * b - 1)
    return (
        f"There are {a} boxes with {b} {item} in each box. {name} takes out {c} {item}. "
        f"How many {item} are left in the boxes?",
        a * b - c,
    )


def _three_gifts(rng: random.Random) -> tuple[str, int]:
    ((name, she),) = rng.sample(NAMES, 1)
    item, a, b, c = rng.choice(ITEMS), rng.randint(1, 12), rng.randint(1, 12), rng.randint(1, 12)
    return (
        f"{name} had {a} {item}. {she} got {b} more on Monday and {c} more on Tuesday. "
        f"How many {item} does {name} have now?",
        a + b + c,
    )


def _bags_plus(rng: random.Random) -> tuple[str, int]:
    (name, _), (friend, _) = rng.sample(NAMES, 2)
    item, a, b, c = rng.choice(ITEMS), rng.randint(2, 6), rng.randint(2, 6), rng.randint(1, 12)
    return (
        f"{name} has {a} bags with {b} {item} in each bag. {friend} has {c} {item}. "
        f"How many {item} do they have together?",
        a * b + c,
    )


def _share(rng: random.Random) -> tuple[str, int]:
    ((name, she),) = rng.sample(NAMES, 1)
    item, c, each = rng.choice(ITEMS), rng.randint(2, 5), rng.randint(2, 6)
    a = rng.randint(1, c * each - 1)
    return (
        f"{name} has {a} {item} and buys {c * each - a} more. {she} shares them equally among {c} friends. "
        f"How many {item} does each friend get?",
        each,
    )


ONE_STEP = [_buy_more, _give_away, _boxes, _share_out]
TWO_STEPS = [_add_then_give, _boxes_minus, _three_gifts, _bags_plus, _share]


STALE_DRAWS = 200_000  # draws in a row without a new problem: the templates have run out


def generate_problems(count: int, seed: int, templates=tuple(ONE_STEP)) -> list[tuple[str, int]]:
    """``count`` distinct (question, answer) pairs from ``templates``, the same for the same seed. The templates
    make a bounded number of distinct problems (the one-step ones about 79 thousand): asking for more is an
    error saying so, not an endless loop."""
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    stale = 0
    while len(seen) < count:
        question, answer = rng.choice(templates)(rng)
        if question in seen:
            stale += 1
            if stale == STALE_DRAWS:
                raise ValueError(
                    f"the embedded task's templates made {len(seen):,} distinct problems and no new one in "
                    f"{STALE_DRAWS:,} draws; {count:,} were asked for (task.num_train + num_val + num_test). "
                    f"Ask for fewer, or give a corpus of your own (task.train_file / task.test_file)"
                )
        else:
            seen[question], stale = answer, 0
    return list(seen.items())


class ArithTask(Task):
    """One-step problems (the embedded default)."""

    name = "arith"
    exemplar_file = "arith_exemplars.jsonl"
    templates = tuple(ONE_STEP)
    answer_format = NumberAnswer()

    def load_splits(self, config: TaskConfig) -> dict[str, list[Example]]:
        sizes = {"train": config.num_train, "val": config.num_val, "test": config.num_test}
        problems = generate_problems(sum(sizes.values()), config.seed, self.templates)
        splits, start = {}, 0
        for split in SPLITS:
            chunk = problems[start : start + sizes[split]]
            splits[split] = [Example(f"{self.name}-{split}-{i:06d}", q, str(a)) for i, (q, a) in enumerate(chunk)]
            start += sizes[split]
        return splits


class TwoStepArithTask(ArithTask):
    """Two-step problems."""

    name = "arith2"
    exemplar_file = "arith2_exemplars.jsonl"
    templates = tuple(TWO_STEPS)
