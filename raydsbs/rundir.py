"""The run directory: one folder that every stage reads and writes.

    runs/<tag>-<hash>/
      config.yaml                 the resolved config
      corpus/{train,val,test}.parquet
      teacher/requests/           one row per (input row, sample): prompt, seed, or why it can't be sent
      teacher/generations/        every completion, parsed (written as it goes; _SUCCESS when complete)
      teacher/checkpoints/        Ray Data's record of the request ids written (row-level resume)
      teacher/distill.parquet     kept rows: id, question, gold, rationale, teacher_label, ...
      teacher/rejects.parquet     dropped rows: id, reason, detail, completion
      teacher/heldout.parquet     the teacher's answers on the val and test rows (scored, never trained on)
      student/tokenizer/          trained on the run's own texts (no pretrained student)
      student/tokenized/          training and validation examples as token ids, shared by trainings
      student/<training>/         model/ (selected on val; adapter/ beside it for LoRA), metrics.json
      student/untrained/<student>/ the untrained student's metrics and predictions (a baseline)
      sweep/                      Ray Tune trials and results.json
      report.md, plots/
      summary.json                counts and figures from every stage

Nothing here is deleted by a rerun: a stage whose output exists is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from raydsbs.config import Config, apply_overrides, build_config, config_hash, to_yaml


class RunDir:
    """Paths of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    config_file = property(lambda self: self.root / "config.yaml")
    corpus = property(lambda self: self.root / "corpus")
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

    def corpus_file(self, split: str) -> Path:
        return self.corpus / f"{split}.parquet"

    def training(self, name: str) -> Path:
        return self.student / name

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary_file.read_text()) if self.summary_file.is_file() else {}

    def update_summary(self, section: str, values: dict[str, Any]) -> None:
        """Merge one stage's figures into summary.json (written whole, then renamed)."""
        summary = self.read_summary()
        summary[section] = values
        staging = self.summary_file.with_suffix(".tmp")
        staging.write_text(json.dumps(summary, indent=2, sort_keys=True))
        staging.replace(self.summary_file)

    def load_config(self, overrides: list[str] = ()) -> Config:
        """The saved config, with ``a.b=c`` overrides applied."""
        tree = apply_overrides(yaml.safe_load(self.config_file.read_text()), list(overrides))
        return build_config(tree, f"{self.config_file}{' + overrides' if overrides else ''}")


def run_dir_for(config: Config) -> RunDir:
    """``<output_dir>/<tag>-<hash of the resolved config>``."""
    return RunDir(Path(config.output_dir) / f"{config.tag}-{config_hash(config)}")


def open_run(config: Config) -> RunDir:
    """Create (or reuse) the run directory of ``config`` and save the resolved config in it."""
    run = run_dir_for(config)
    run.root.mkdir(parents=True, exist_ok=True)
    if not run.config_file.is_file():
        run.config_file.write_text(to_yaml(config))
    return run
