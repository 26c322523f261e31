"""What a run cost and what its student saves, in resource-seconds: the CPUs or GPUs a stage reserved times its
wall time, priced with ``cost.*`` when given.

    teacher    the stream's seconds × its replicas' reservation (tensor_parallel_size GPUs, or cpus_per_replica
               CPUs, each); an API teacher: its prompt and generated tokens × cost.api_input_per_mtok and
               cost.api_output_per_mtok; replay: nothing
    training   each training's seconds × train.num_workers × (one GPU, or train.cpus_per_worker CPUs)
    serving    the student's scoring: seconds per answer × the CPUs or GPUs that answered, per million answers

and one recommendation: of the students within ``cost.margin`` of the best validation accuracy, the smallest
(parameters, then training fraction), with its test accuracy and what a million of its answers cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from raydsbs.config import Config, CostConfig

MILLION = 1_000_000


@dataclass(frozen=True)
class Usage:
    """CPU-seconds and GPU-seconds."""

    cpu: float = 0.0
    gpu: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpu + other.cpu, self.gpu + other.gpu)

    def times(self, factor: float) -> Usage:
        return Usage(self.cpu * factor, self.gpu * factor)

    def text(self, prices: CostConfig) -> str:
        """``12.3 CPU-h`` (and GPU-h), with the price where cost.* gives one."""
        parts = [
            f"{seconds / 3600:.3g} {kind}-h" for kind, seconds in (("GPU", self.gpu), ("CPU", self.cpu)) if seconds
        ]
        if not parts:
            return "nothing measured"
        price = self.price(prices)
        return " + ".join(parts) + (f" ({price:.4g} at cost.*)" if price is not None else "")

    def price(self, prices: CostConfig) -> float | None:
        if (self.cpu and prices.cpu_hour is None) or (self.gpu and prices.gpu_hour is None):
            return None
        return (self.cpu * (prices.cpu_hour or 0) + self.gpu * (prices.gpu_hour or 0)) / 3600


def rows_answered(teacher: dict) -> int:
    """The rows the teacher stream answered: the train rows, and the val and test rows it was scored on."""
    return teacher.get("rows", 0) + teacher.get("teacher_rows_val", 0) + teacher.get("teacher_rows_test", 0)


def teacher_usage(config: Config, teacher: dict) -> tuple[Usage, int] | None:
    """(an engine teacher's usage, rows it answered), or None when this run has no figure for it."""
    seconds, rows = teacher.get("seconds"), rows_answered(teacher)
    if seconds is None or not teacher.get("rows"):
        return None
    spec = config.teacher
    per_second = (
        Usage(gpu=spec.replicas * spec.tensor_parallel_size)
        if spec.use_gpu
        else Usage(cpu=spec.replicas * spec.cpus_per_replica)
    )
    return per_second.times(seconds), rows


def training_usage(settings: dict, seconds: float | None) -> Usage:
    """A training's usage from its settings (dotted student/train keys) and its wall time."""
    if seconds is None:
        return Usage()
    if settings["train.use_gpu"]:
        return Usage(gpu=seconds * settings["train.num_workers"])
    return Usage(cpu=seconds * settings["train.num_workers"] * settings["train.cpus_per_worker"])


def serving_usage(metrics: dict) -> Usage | None:
    """What one answer of the student cost while it was scored, or None when its scoring was not timed."""
    scoring = metrics.get("scoring")
    if not scoring or not scoring.get("answers"):
        return None
    per_answer = scoring["seconds"] / scoring["answers"]
    return Usage(cpu=per_answer * scoring["cpus"], gpu=per_answer * scoring["gpus"])


def api_teacher_line(prices: CostConfig, teacher: dict) -> str:
    """An API teacher's tokens as its usage counted them, priced per million when the prices are given."""
    tokens = {"prompt": teacher.get("prompt_tokens", 0), "generated": teacher.get("generated_tokens", 0)}
    per_mtok = {"prompt": prices.api_input_per_mtok, "generated": prices.api_output_per_mtok}
    line = f"- teacher (an API): {tokens['prompt']} prompt tokens and {tokens['generated']} generated tokens"
    unpriced = [kind for kind, price in per_mtok.items() if price is None]
    if len(unpriced) == 2:
        return f"{line} (set cost.api_input_per_mtok and cost.api_output_per_mtok to price them)"
    cost = sum(tokens[kind] * price for kind, price in per_mtok.items() if price is not None) / MILLION
    per_rows = cost * MILLION / (rows_answered(teacher) or 1)
    left = f"; the {unpriced[0]} tokens unpriced" if unpriced else ""
    return f"{line}: {cost:.4g} ({per_rows:.4g} per 1M rows){left}"


def teacher_lines(config: Config, teacher: dict) -> list[str]:
    prices = config.cost
    if config.teacher.backend == "replay":
        return ["- teacher: completions replayed from files: no teacher compute in this run"]
    if config.teacher.backend == "openai":
        return [api_teacher_line(prices, teacher)]
    used = teacher_usage(config, teacher)
    if used is None:
        return ["- teacher: its stream's time is not in this run's summary"]
    usage, rows = used
    resumed = " (the last attempt's time: the run was resumed)" if teacher.get("resumed") else ""
    return [
        f"- teacher ({config.teacher.replicas} replica(s)): {teacher['seconds']:.0f} s for {rows} rows{resumed}: "
        f"{usage.text(prices)}; labelling 1M rows: {usage.times(MILLION / rows).text(prices)}"
    ]


def cost_lines(config: Config, teacher: dict, trainings: list, rows: list[dict], keys: list[str]) -> list[str]:
    """The report's cost section: the teacher, the trainings, and the recommendation with its serving cost.
    ``trainings``: the report's evaluated students; ``rows``: their table, grouped by ``keys``."""
    prices = config.cost
    lines = teacher_lines(config, teacher)
    total = sum((training_usage(t.settings, t.seconds) for t in trainings), Usage())
    timed = sum(t.seconds is not None for t in trainings)
    lines.append(f"- training: {len(trainings)} training(s), {timed} timed: {total.text(prices)} in all")
    serving: dict[tuple, list[Usage]] = {}  # a table row's key values -> its timed trainings' usage per answer
    for training in trainings:
        if (usage := serving_usage(training.metrics)) is not None:
            serving.setdefault(tuple(training.settings.get(key) for key in keys), []).append(usage)
    per_row = {row: sum(usages, Usage()).times(1 / len(usages)) for row, usages in serving.items()}
    lines.append(recommendation(rows, keys, per_row, prices))
    return lines


def recommendation(rows: list[dict], keys: list[str], serving: dict[tuple, Usage], prices: CostConfig) -> str:
    """The smallest student and fraction within ``prices.margin`` of the best validation accuracy."""
    if not rows:
        return "- recommendation: no evaluated students"
    best = max(row["val_mean"] for row in rows)
    near = [row for row in rows if row["val_mean"] >= best - prices.margin]
    chosen = min(near, key=lambda row: (row.get("parameters") or 0, row["train.train_fraction"]))
    name = chosen["train.method"] + (
        f" (λ={chosen['train.rationale_weight']:g})" if chosen["train.method"] == "step_by_step" else ""
    )
    usage = serving.get(tuple(chosen[key] for key in keys))
    cost = usage.times(MILLION).text(prices) if usage else "not timed (scored before raydsbs timed its scoring)"
    size = f"{chosen['parameters'] / 1e6:.0f}M parameters, " if chosen.get("parameters") else ""
    return (
        f"- recommendation: {name} at a training fraction of {chosen['train.train_fraction']:g} ({size}validation "
        f"{100 * chosen['val_mean']:.1f} %, within {100 * prices.margin:g} points of the best, {100 * best:.1f} %; "
        f"test {100 * chosen['test_mean']:.1f} %); a million of its answers: {cost}"
    )
