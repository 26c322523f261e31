"""The run directory: one folder that every stage reads and writes.

    runs/<tag>-<hash>/
      config.yaml                 the resolved config
      corpus/{train,val,test}.parquet, rejects.parquet, seen_in_train.parquet (held-out rows train repeats)
      teacher/requests/           one row per (input row, sample): prompt, seed, or why it can't be sent
      teacher/generations/        every completion, parsed (written as it goes; _SUCCESS when complete)
      teacher/checkpoints/        Ray Data's record of the request ids written (row-level resume)
      teacher/distill.parquet     kept rows: id, question, gold, rationale, teacher_label, ...
      teacher/rejects.parquet     dropped rows: id, reason, detail, completion
      teacher/heldout.parquet     the teacher's answers on the val and test rows (scored, never trained on)
      student/tokenizer/          trained on the run's own texts (no pretrained student)
      student/tokenized/          training and validation examples as token ids, shared by trainings
      student/<training>/         model/ (selected on val; adapter/ beside it for LoRA), metrics.json,
                                  predictions.parquet
      student/untrained/<student>/ the untrained student's metrics and predictions (a baseline)
      sweep/                      Ray Tune trials and results.json
      tensorboard/<training>/     each training's TensorBoard events (raydsbs.tracking; W&B's offline runs: wandb/)
      report.md, plots/
      summary.json                counts and figures from every stage

The run directory may be on any storage pyarrow speaks (``output_dir: s3://bucket/runs``; see
raydsbs.storage). Nothing here is deleted by a rerun: a stage whose output is committed is skipped. Every
output is written aside and committed in one step (raydsbs.staging), so what is committed is whole.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import yaml

from raydsbs.config import Config, ConfigError, TeacherConfig, config_hash, how_it_runs, to_yaml
from raydsbs.resolve import apply_overrides, build_config
from raydsbs.staging import written_whole
from raydsbs.storage import Location, location

logger = logging.getLogger(__name__)


class RunDir:
    r"""Paths of one run directory (:class:`raydsbs.storage.Location`\ s)."""

    def __init__(self, root: str | os.PathLike | Location):
        self.root = location(root)

    config_file = property(lambda self: self.root / "config.yaml")
    corpus = property(lambda self: self.root / "corpus")
    seen_in_train_file = property(lambda self: self.corpus / "seen_in_train.parquet")
    teacher = property(lambda self: self.root / "teacher")
    requests = property(lambda self: self.teacher / "requests")
    generations = property(lambda self: self.teacher / "generations")
    generation_checkpoints = property(lambda self: self.teacher / "checkpoints")
    distill_file = property(lambda self: self.teacher / "distill.parquet")
    rejects_file = property(lambda self: self.teacher / "rejects.parquet")
    heldout_file = property(lambda self: self.teacher / "heldout.parquet")
    student = property(lambda self: self.root / "student")
    tokenizer = property(lambda self: self.student / "tokenizer")
    untrained = property(lambda self: self.student / "untrained")
    sweep = property(lambda self: self.root / "sweep")
    report_file = property(lambda self: self.root / "report.md")
    plots = property(lambda self: self.root / "plots")
    summary_file = property(lambda self: self.root / "summary.json")

    def corpus_file(self, split: str) -> Location:
        return self.corpus / f"{split}.parquet"

    def training(self, name: str) -> Location:
        return self.student / name

    @staticmethod
    def predictions_file(scored: Location) -> Location:
        """A scored student's folder's answers, a row each (split, id, output, label, gold, correct)."""
        return scored / "predictions.parquet"

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary_file.read_text()) if self.summary_file.is_file() else {}

    def update_summary(self, section: str, values: dict[str, Any]) -> None:
        """Merge one stage's figures into summary.json (written whole, then renamed)."""
        summary = self.read_summary()
        summary[section] = values
        with written_whole(self.summary_file, folder=False, replace=True) as staging:
            staging.write_text(json.dumps(summary, indent=2, sort_keys=True))

    def load_config(self, overrides: list[str] = ()) -> Config:
        """The saved config, with ``a.b=c`` overrides applied.

        An override of a key that made an output this directory already holds (``task.*`` once the corpus
        exists, ``teacher.*`` once the teacher has generated) is an error naming the key, both values and what
        to do: the output would not be remade for it. One whose stage has not run yet is saved in
        config.yaml, so later commands see it too. ``student.*``, ``train.*`` and ``eval.*`` overrides name
        their own trainings and scores and are never saved."""
        saved = build_config(yaml.safe_load(self.config_file.read_text()), str(self.config_file))
        if not overrides:
            return saved
        config = build_config(
            apply_overrides(saved.model_dump(mode="json"), list(overrides)), f"{self.config_file} + overrides"
        )
        changed = {
            key: (stage, old, new)
            for key, (old, new) in changed_keys(saved, config).items()
            if (stage := producing_stage(key))
        }
        problems = [
            f"{key}: this run's {stage} was made with {old!r}, the override says {new!r}, and it is not "
            f"remade for an override. Run the config file with the override instead (its own run "
            f"directory), or delete {self._stage_folder(stage)} to remake it here"
            for key, (stage, old, new) in changed.items()
            if self._stage_done(stage)
        ]
        if problems:
            raise ConfigError(str(self.root), problems)
        if changed:
            self.config_file.write_text(to_yaml(config))
            logger.info(
                "config.yaml of %s updated: %s",
                self.root.name,
                ", ".join(f"{key} {old!r} -> {new!r}" for key, (_, old, new) in changed.items()),
            )
        return config

    def _stage_folder(self, stage: str) -> Location:
        return self.corpus if stage == "corpus" else self.teacher

    def _stage_done(self, stage: str) -> bool:
        """Whether the stage has written anything (a partial teacher output counts: it would be resumed)."""
        folder = self._stage_folder(stage)
        return bool(folder.iterdir())


TEACHER_RUNTIME_KEYS = how_it_runs(TeacherConfig)  # a rerun may change these: they do not change outputs


def producing_stage(key: str) -> str | None:
    """The stage whose output a dotted config key changes, among those a run directory holds once for all its
    trainings ("corpus", "teacher"); None for keys of the trainings, the evaluation and the machinery."""
    section, _, name = key.partition(".")
    if key == "task.parser":  # how completions are read
        return "teacher"
    if section == "task":
        return "corpus"
    if section == "teacher" and name.split(".")[0] not in TEACHER_RUNTIME_KEYS:
        return "teacher"
    return None


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        return {key: value for name, item in tree.items() for key, value in _leaves(item, f"{prefix}{name}.").items()}
    return {prefix.rstrip("."): tree}


def changed_keys(before: Config, after: Config) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose value differs between two configs: {key: (before, after)}."""
    old, new = _leaves(before.model_dump(mode="json")), _leaves(after.model_dump(mode="json"))
    return {
        key: (old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)
    }


def run_dir_for(config: Config) -> RunDir:
    """``<output_dir>/<tag>-<hash of the resolved config>``."""
    return RunDir(location(config.output_dir) / f"{config.tag}-{config_hash(config)}")


JOB_CONFIG_VARIABLE = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for the driver of a submitted job


def submitted_job_working_dir() -> str | None:
    """The ``--working-dir`` of the Ray job this process is the driver of, or None (not a submitted job, or
    one without a working dir)."""
    raw = os.environ.get(JOB_CONFIG_VARIABLE)
    if not raw:
        return None
    try:
        return (json.loads(raw).get("runtime_env") or {}).get("working_dir")
    except (ValueError, AttributeError):
        return None


def check_output_dir(output_dir: str) -> None:
    """Refuse a relative local output_dir in a job submitted with ``--working-dir``: it would resolve inside
    the job's unpacked copy of that folder on the head node, which the worker nodes do not see and Ray
    deletes with its session."""
    where = submitted_job_working_dir()
    if where is None or "://" in output_dir or os.path.isabs(os.path.expanduser(output_dir)):
        return
    raise ConfigError(
        "output_dir",
        [
            f"output_dir={output_dir!r} is relative, and this driver runs as a Ray job with working_dir {where}: "
            f"the run directory would be inside the job's unpacked copy of it on the head node, out of the "
            f"worker nodes' reach and deleted with Ray's session. Give storage every node reaches: "
            f"output_dir=s3://BUCKET/runs (or gs://, abfs://; credentials from the nodes' environment) or an "
            f"absolute path every node mounts, e.g. output_dir=/mnt/shared/runs"
        ],
    )


def open_run(config: Config) -> RunDir:
    """Create (or reuse) the run directory of ``config`` and save the resolved config in it."""
    check_output_dir(config.output_dir)
    run = run_dir_for(config)
    run.root.mkdir()
    if not run.config_file.is_file():
        run.config_file.write_text(to_yaml(config))
    return run
