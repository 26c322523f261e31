"""Evaluation: greedy label predictions of a trained student, scored by the task's own comparison, and the
two lines every result is read against: the untrained student and the trivial floor.

Validation accuracy is what a user may select on; test accuracy is reported
once per trained model and never used to choose anything.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from raydsbs.config import Config, EvalConfig, StudentConfig, config_hash
from raydsbs.data.corpus import held_out_accuracy, seen_test_ids
from raydsbs.progress import ProgressLine, log_from_worker
from raydsbs.rundir import RunDir
from raydsbs.staging import written_whole
from raydsbs.storage import Location, local_copy
from raydsbs.student.inference import predict_counted
from raydsbs.student.launcher import prepare_tokenizer, without_ignored_keys
from raydsbs.student.learner import DTYPES, MODEL_SUBDIR, compute_dtype, use_worker_cores
from raydsbs.student.model import saved_parameters
from raydsbs.tasks import get_task
from raydsbs.tracking import log_scored

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("val", "test")


def answer_tokens(config: Config) -> int:
    """Tokens a student may generate for one answer: a label's, or a rationale and a label's (cot_finetune)."""
    if config.train.method == "cot_finetune":
        return config.student.max_rationale_tokens + config.eval.max_new_tokens
    return config.eval.max_new_tokens


class Scorer:
    """One copy of a student answering questions with greedy label predictions, scored by the task: in the
    driver's process, or as a Ray Data actor on a training worker's device (:func:`score`).

    ``folder``: a saved model folder (a local path or a storage URI); None: the untrained student of
    ``config.student``, built from the same seed as its trainings."""

    def __init__(self, config: dict, run_dir: str, folder: str | None, actor: bool = False):
        import torch

        from raydsbs.student.batching import student_format
        from raydsbs.student.model import build_student, load_student, student_kind
        from raydsbs.student.tokenizer import load_tokenizer

        self.config = config = Config.model_validate(config)
        if folder:
            self.model, self.tokenizer, self.format = load_student(local_copy(folder), config.student.trust_remote_code)
        else:
            self.tokenizer = load_tokenizer(config.student, RunDir(run_dir).tokenizer)
            torch.manual_seed(config.train.seed)  # the initial weights the trainings start from
            self.model = build_student(config.student, self.tokenizer)
            self.format = student_format(config.student, student_kind(config.student))
        on_gpu = config.train.use_gpu and torch.cuda.is_available()
        if actor and not on_gpu:  # the driver's process keeps its own threads
            use_worker_cores(config.train)
        if actor:  # counts its own rows (the driver's process counts the whole scoring itself)
            log_from_worker()
            self.progress = ProgressLine("evaluate", "row", None)
        self.model.to(torch.device("cuda") if on_gpu else torch.device("cpu"))
        self.dtype = DTYPES[compute_dtype(config.train)]  # the precision the student trained in
        self.task = get_task(config.task.name)

    def rows(self, examples: dict[str, list]) -> list[dict]:
        """A prediction row per example (columns ``split``, ``id``, ``question``, ``gold``), in order."""
        outputs = predict_counted(
            self.model,
            self.tokenizer,
            self.format,
            list(examples["question"]),
            "label",
            answer_tokens(self.config),
            self.config.eval.batch_size,
            self.dtype,
        )
        rows = []
        for split, id_, question, gold, (output, tokens) in zip(
            examples["split"], examples["id"], examples["question"], examples["gold"], outputs, strict=True
        ):
            label = self.task.parse_prediction(output, question)
            rows.append(
                {
                    "split": str(split),
                    "id": str(id_),
                    "output": output,
                    "label": label or "",
                    "gold": str(gold),
                    "correct": self.task.answers_match(label, gold),
                    "generated_tokens": tokens,
                }
            )
        return rows

    def __call__(self, batch: dict) -> dict:  # a Ray Data batch of numpy columns
        rows = self.rows(batch)
        self.progress.advance(len(rows))
        return {
            "position": batch["position"],
            **{column: [row[column] for row in rows] for column in PREDICTION_COLUMNS},
        }


PREDICTION_COLUMNS = ("split", "id", "output", "label", "gold", "correct", "generated_tokens")


def scoring_actors(config: Config) -> int:
    """How many Ray Data actors score a student (0: the driver's process does)."""
    if config.eval.actors is not None:
        return config.eval.actors
    return config.train.num_workers if config.train.use_gpu else 0


def _examples(run: RunDir, split: str) -> pa.Table:
    """The split's rows to score: ``split``, ``id``, ``question``, ``gold``."""
    file = run.corpus_file(split)
    table = pq.read_table(file.path, filesystem=file.fs, columns=["id", "question", "gold"])
    return table.add_column(0, "split", pa.array([split] * table.num_rows, pa.string()))


def _scored_by_actors(config: Config, run: RunDir, folder: str | None, actors: int) -> list[dict]:
    """Every val and test row through a Ray Data stage of ``actors`` Scorers (one GPU each with train.use_gpu),
    in each split's order."""
    import ray

    from raydsbs.ray_session import start_ray

    start_ray(config.ray)
    # The rows are few (val and test) and read here: no reading task waits for the CPUs the actors hold. Each
    # block is a few of the driver's batches of one split, and an actor answers it in those batches: the same
    # rows side by side as in the driver's process (in bf16 a row's answer can depend on its batch's shape).
    size, blocks = config.eval.batch_size, []
    for split in EVAL_SPLITS:
        table = _examples(run, split)
        table = table.append_column("position", pa.array(range(table.num_rows), pa.int64()))
        piece = size * max(1, -(-table.num_rows // (size * 2 * actors)))  # about two blocks per actor and split
        blocks += [table.slice(start, piece) for start in range(0, table.num_rows, piece)]
    scored = ray.data.from_arrow(blocks).map_batches(
        Scorer,
        fn_constructor_kwargs={
            "config": config.model_dump(mode="json"),
            "run_dir": str(run.root),
            "folder": folder,
            "actor": True,
        },
        batch_size=None,  # a block at a time (the Scorer batches it by eval.batch_size)
        batch_format="numpy",
        concurrency=actors,
        num_cpus=config.train.cpus_per_worker,
        num_gpus=1 if config.train.use_gpu else 0,
    )
    rows = [{column: _plain(row[column]) for column in ("position", *PREDICTION_COLUMNS)} for row in scored.iter_rows()]
    rows.sort(key=lambda row: (EVAL_SPLITS.index(row["split"]), row["position"]))  # blocks come back in any order
    return [{column: row[column] for column in PREDICTION_COLUMNS} for row in rows]


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def score(config: Config, run: RunDir, folder: Location | None) -> tuple[dict, list[dict]]:
    """Accuracy on val and test and tokens generated per answer, greedy, in the precision the student trained
    in, of the model in ``folder`` (None: the untrained student); and a row per prediction. Scored by
    ``eval.actors`` Ray Data actors on the training workers' devices, or in this process."""
    source = str(folder) if folder is not None else None
    actors = scoring_actors(config)
    started = time.perf_counter()
    if actors:  # the actors' start is timed too: what a served replica also pays once
        rows = _scored_by_actors(config, run, source, actors)
        gpus = actors if config.train.use_gpu else 0
        cpus = 0 if gpus else actors * config.train.cpus_per_worker
    else:
        import torch

        scorer = Scorer(config.model_dump(mode="json"), str(run.root), source)
        started = time.perf_counter()  # the model is loaded: what serving pays per answer from here
        gpus = int(scorer.model.device.type == "cuda")
        cpus = 0 if gpus else torch.get_num_threads()
        examples, size = [_examples(run, split) for split in EVAL_SPLITS], config.eval.batch_size
        progress, rows = ProgressLine("evaluate", "row", sum(table.num_rows for table in examples)), []
        for table in examples:  # in the batches the scorer would make of the whole split
            for start in range(0, table.num_rows, size):
                rows += scorer.rows(table.slice(start, size).to_pydict())
                progress.advance(min(size, table.num_rows - start))
        progress.finish()
    seconds = time.perf_counter() - started
    metrics: dict = {"scoring": {"seconds": round(seconds, 2), "answers": len(rows), "cpus": cpus, "gpus": gpus}}
    for split in EVAL_SPLITS:
        scored = [row for row in rows if row["split"] == split]
        count = max(1, len(scored))
        metrics[f"{split}_accuracy"] = round(sum(r["correct"] for r in scored) / count, 4)
        metrics[f"{split}_tokens_per_answer"] = round(sum(r["generated_tokens"] for r in scored) / count, 1)
    return metrics, rows


def _write(folder: Location, metrics: dict, rows: list[dict]) -> None:
    """The predictions, then the metrics that mark the scoring done; each file whole."""
    with written_whole(RunDir.predictions_file(folder), folder=False, replace=True) as staging:
        pq.write_table(pa.Table.from_pylist(rows), staging)
    with written_whole(folder / "metrics.json", folder=False, replace=True) as staging:
        staging.write_text(json.dumps(metrics, indent=2))


def evaluate_student(config: Config, run: RunDir, folder: Location) -> dict:
    """Accuracy on val and test of the model in ``folder``; writes metrics.json and predictions.parquet."""
    metrics_file = folder / "metrics.json"
    scoring = config.eval.scoring()
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        if metrics.get("eval") == scoring:
            logger.info("evaluate | %s | reuses its scores (metrics.json, the same eval.* settings)", folder.name)
            return metrics
        logger.info("evaluate | %s | scores again: eval.* was %s, is %s", folder.name, metrics.get("eval"), scoring)
    config = without_ignored_keys(config)
    training_file = folder / "training.json"
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    metrics: dict = {
        "training": folder.name,
        "method": config.train.method,
        "train_fraction": config.train.train_fraction,
        "rationale_weight": config.train.rationale_weight,
        "seed": config.train.seed,
        "parameters": saved_parameters(folder / MODEL_SUBDIR),
        "examples": training.get("examples"),
        "eval": scoring,
    }
    scores, rows = score(config, run, folder / MODEL_SUBDIR)
    metrics.update(scores)
    _write(folder, metrics, rows)
    log_scored(config, run, folder, metrics, folder / MODEL_SUBDIR)
    logger.info(
        "evaluate | %s | val acc %.3f | test acc %.3f | %.1f tokens per answer",
        folder.name,
        metrics["val_accuracy"],
        metrics["test_accuracy"],
        metrics["test_tokens_per_answer"],
    )
    return metrics


def _untrained(config: Config, run: RunDir) -> tuple[StudentConfig, Location]:
    """The untrained student's settings and its folder: one per student setting."""
    student = config.student.model_copy(update={"lora": None})  # adapters start as the identity
    scoring = EvalConfig(**config.eval.scoring())  # how many processes score it names no new baseline
    return student, run.untrained / f"{student.preset}-{config_hash(Config(student=student, eval=scoring), 6)}"


def evaluate_untrained(config: Config, run: RunDir) -> dict:
    """The student as it starts, before any training, asked the label task with the same prompt and parser:
    what a trained student's accuracy is to be read against (written once per student setting)."""
    student, folder = _untrained(config, run)
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    prepare_tokenizer(config, run)
    train = config.train.model_copy(update={"method": "standard_finetune"})
    metrics, rows = score(config.model_copy(update={"student": student, "train": train}), run, None)
    metrics = {"student": student.pretrained or student.preset, **metrics}
    folder.mkdir()
    _write(folder, metrics, rows)
    logger.info(
        "evaluate | untrained %s | val acc %.3f | test acc %.3f",
        metrics["student"],
        metrics["val_accuracy"],
        metrics["test_accuracy"],
    )
    return metrics


def floor_accuracy(config: Config, run: RunDir, leave_out: set[str] | frozenset = frozenset()) -> dict:
    """The trivial floor on the test split (less the rows whose ids are in ``leave_out``): always answering the
    train split's most common label, or a uniform guess among a row's choices, whichever scores higher."""
    task = get_task(config.task.name)
    train_file, test_file = run.corpus_file("train"), run.corpus_file("test")
    train = pq.read_table(train_file.path, filesystem=train_file.fs, columns=["gold"])["gold"].to_pylist()
    test = pq.read_table(test_file.path, filesystem=test_file.fs, columns=["id", "question", "gold"]).to_pylist()
    test = [row for row in test if row["id"] not in leave_out]
    counts = Counter(task.normalize(gold) for gold in train)
    counts.pop(None, None)
    candidates = []
    if counts:
        common = counts.most_common(1)[0][0]
        label = next(gold for gold in train if task.normalize(gold) == common)
        hits = sum(task.answers_match(label, row["gold"]) for row in test)
        candidates.append((hits / max(1, len(test)), f"always {label!r}, the train split's most common label"))
    chances = [task.answer_format.chance(row["question"]) for row in test]
    if test and all(chance is not None for chance in chances):
        candidates.append((sum(chances) / len(test), "a uniform guess among each row's choices"))
    accuracy, how = max(candidates, default=(0.0, "no label to guess"))
    return {"accuracy": round(accuracy, 4), "how": how}


def write_baselines(config: Config, run: RunDir) -> dict:
    """The untrained student and the floor, into summary.json ("baselines") for the report."""
    untrained, floor = evaluate_untrained(config, run), floor_accuracy(config, run)
    baselines = {
        "untrained_student": untrained["student"],
        "untrained_student_test_accuracy": untrained["test_accuracy"],
        "untrained_student_val_accuracy": untrained["val_accuracy"],
        "floor_test_accuracy": floor["accuracy"],
        "floor": floor["how"],
    }
    if run.read_summary().get("corpus", {}).get("inputs_seen_in_train", {}).get("test"):
        seen = seen_test_ids(run)  # the same two on the test rows no train row repeats
        unseen = held_out_accuracy(RunDir.predictions_file(_untrained(config, run)[1]), "correct", seen)
        baselines["untrained_student_unseen_test_accuracy"] = None if unseen is None else round(unseen, 4)
        baselines["floor_unseen_test_accuracy"] = floor_accuracy(config, run, leave_out=seen)["accuracy"]
    run.update_summary("baselines", baselines)
    return baselines
