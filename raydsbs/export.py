"""A trained student as a self-contained Hugging Face model folder, with the evidence the run holds for it.

    raydsbs export RUN_DIR --to DIR [key=value ...] [--push-to-hub REPO]

``DIR`` receives, all or nothing (an existing one is never overwritten):

    the model folder as training left it      a LoRA student's adapters are merged already: transformers alone
                                              loads it (AutoModelForSeq2SeqLM / AutoModelForCausalLM)
    README.md                                 the model card: YAML metadata (base model, task, metrics), then
                                              the evidence: the teacher, the data and the fraction trained on,
                                              the method, test accuracy beside the teacher's, the untrained
                                              student's and the trivial floor's on the same test rows, and what
                                              the training cost
    raydsbs_evidence.json                     the figures behind the card

The student is the training the run's config (with the overrides) names, as ``raydsbs predict`` and
``raydsbs serve`` ask it; it must have been evaluated.
"""

from __future__ import annotations

import json
import logging
import shutil

import yaml

from raydsbs.config import Config
from raydsbs.data.corpus import held_out_accuracy, seen_test_ids
from raydsbs.report import teacher_source
from raydsbs.rundir import RunDir
from raydsbs.staging import committed, written_whole
from raydsbs.storage import Location, local_copy, location
from raydsbs.student.model import pretrained_source
from raydsbs.teacher.model_cache import BUNDLED_ORIGINS, BUNDLED_PREFIX

logger = logging.getLogger(__name__)

EVIDENCE_FILE = "raydsbs_evidence.json"
CARD_FILE = "README.md"


class ExportError(ValueError):
    """Why a student can't be exported (or pushed), and what to do."""


def evidence(config: Config, run: RunDir, training: Location) -> dict:
    """What the run knows of the student in ``training`` (its folder): settings, scores beside the references on
    the same test split, data and cost."""
    metrics_file = training / "metrics.json"
    if not metrics_file.is_file():
        raise ExportError(f"{training.name} has no metrics.json: run `raydsbs evaluate {run.root}` first")
    metrics = json.loads(metrics_file.read_text())
    training_file = training / "training.json"
    trained = json.loads(training_file.read_text()) if training_file.is_file() else {}
    summary = run.read_summary()
    teacher, baselines, corpus = summary.get("teacher", {}), summary.get("baselines", {}), summary.get("corpus", {})
    seen_in_train = corpus.get("inputs_seen_in_train", {}).get("test")
    seen = seen_test_ids(run) if seen_in_train else set()  # test rows whose input a train row has too
    return {
        "run": str(run.root),
        "training": training.name,
        "task": config.task.name,
        "teacher": teacher_source(config),
        "student": {"preset": config.student.preset, "pretrained": pretrained_source(config.student)},
        "lora": config.student.lora.model_dump() if config.student.lora else None,
        "parameters": metrics.get("parameters"),
        "method": metrics["method"],
        "rationale_weight": metrics["rationale_weight"],
        "train_fraction": metrics["train_fraction"],
        "seed": metrics["seed"],
        "corpus_rows": {split: corpus.get(split) for split in ("train", "val", "test")},
        "test_inputs_seen_in_train": seen_in_train,
        "unseen_test_accuracy": held_out_accuracy(RunDir.predictions_file(training), "correct", seen) if seen else None,
        "teacher_unseen_test_accuracy": held_out_accuracy(run.heldout_file, "teacher_correct", seen) if seen else None,
        "examples": metrics.get("examples"),
        "val_accuracy": metrics["val_accuracy"],
        "test_accuracy": metrics["test_accuracy"],
        "teacher_test_accuracy": teacher.get("teacher_accuracy_test"),
        "untrained_test_accuracy": baselines.get("untrained_student_test_accuracy"),
        "floor_test_accuracy": baselines.get("floor_test_accuracy"),
        "floor": baselines.get("floor"),
        "training_seconds": trained.get("seconds"),
        "optimizer_steps": trained.get("final_step"),
        "train_workers": config.train.num_workers,
        "train_gpus": config.train.use_gpu,
    }


def _percent(accuracy: float | None) -> str:
    return "not measured" if accuracy is None else f"{100 * accuracy:.1f} %"


def card_metadata(facts: dict, kind: str) -> dict:
    """The card's YAML metadata, as a hub reads it: library, pipeline, tags, base model, the test accuracy."""
    base = facts["student"]["pretrained"]
    hub_base = BUNDLED_ORIGINS.get(base.removeprefix(BUNDLED_PREFIX)) if base else None  # a bundled GGUF's origin
    if base and not base.startswith(BUNDLED_PREFIX):
        hub_base = base
    result = {
        "task": {"type": "text-generation", "name": facts["task"]},
        "dataset": {"type": facts["task"], "name": f"{facts['task']} test split of the run"},
        "metrics": [{"type": "accuracy", "value": facts["test_accuracy"], "name": "test accuracy"}],
    }
    return {
        "library_name": "transformers",
        "pipeline_tag": "text2text-generation" if kind == "seq2seq" else "text-generation",
        "tags": ["raydsbs", "distilling-step-by-step", "distillation", facts["method"].replace("_", "-")],
        **({"base_model": hub_base} if hub_base else {}),
        "model-index": [{"name": facts["training"], "results": [result]}],
    }


def model_card(facts: dict, kind: str) -> str:
    """The model card: YAML metadata a hub reads, then the evidence in words."""
    base = facts["student"]["pretrained"]
    metadata = card_metadata(facts, kind)
    rows, seen = facts["corpus_rows"], facts["test_inputs_seen_in_train"]
    seconds = facts["training_seconds"]
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {facts['training']}",
        "",
        f"A student distilled with raydsbs (Distilling Step-by-Step, Hsieh et al., 2023; {facts['method']}) for "
        f"the task "
        f"`{facts['task']}`: {base or 'built from config (' + facts['student']['preset'] + ')'}"
        + (", LoRA merged" if facts["lora"] else "")
        + (f", {facts['parameters'] / 1e6:.0f}M parameters." if facts["parameters"] else "."),
        "",
        "## Evidence (from the run's report, one test split for all)",
        "",
        "| model | test accuracy |",
        "|---|---|",
        f"| this student | {_percent(facts['test_accuracy'])} |",
        f"| the teacher ({facts['teacher']}) | {_percent(facts['teacher_test_accuracy'])} |",
        f"| the untrained student | {_percent(facts['untrained_test_accuracy'])} |",
        f"| the trivial floor ({facts['floor'] or 'the most common answer'}) | "
        f"{_percent(facts['floor_test_accuracy'])} |",
        "",
        f"- data: {rows['train']} train / {rows['val']} val / {rows['test']} test rows; trained on a fraction of "
        f"{facts['train_fraction']:g} of train ({facts['examples']} examples), seed {facts['seed']}"
        + ("" if seen is None else f"; {seen} test rows repeat a train row's input (case and spacing aside)")
        + (
            f": on the other {rows['test'] - seen}, this student {_percent(facts['unseen_test_accuracy'])}, the "
            f"teacher {_percent(facts['teacher_unseen_test_accuracy'])}"
            if seen
            else ""
        ),
        f"- method: {facts['method']}"
        + (
            f", λ = {facts['rationale_weight']:g} (loss = label loss + λ · rationale loss)"
            if facts["method"] == "step_by_step"
            else ""
        ),
        f"- validation accuracy {_percent(facts['val_accuracy'])} (the checkpoint was chosen on validation; "
        "the test split was scored once, greedily, in the precision the student trained in; `predict` and "
        "`serve` compute in fp32 (vLLM on GPUs in half precision), so an answer can differ where rounding tipped it)",
        f"- training: {facts['optimizer_steps']} optimizer steps, "
        + (f"{seconds:.0f} s" if seconds is not None else "time not recorded")
        + f" on {facts['train_workers']} worker(s) ({'GPUs' if facts['train_gpus'] else 'CPUs'})",
        "",
        "## Use",
        "",
        "Ask it the way it was trained: `raydsbs predict --model DIR --input TEXT`, or `raydsbs serve --model DIR`; "
        "the prompt format is in `raydsbs_student.json`. The figures above are in `raydsbs_evidence.json`.",
        "",
    ]
    return "\n".join(lines)


def export_student(config: Config, run: RunDir, training: Location, to: str) -> Location:
    """The student of ``training`` (its folder in the run) into ``to``, with its card; all or nothing."""
    from raydsbs.student.learner import MODEL_SUBDIR
    from raydsbs.student.model import FORMAT_FILE

    target = location(to)
    if committed(target) and (not target.is_dir() or target.iterdir()):
        raise ExportError(f"{target} exists: export into a new folder, or remove it first")
    facts = evidence(config, run, training)
    model = local_copy(training / MODEL_SUBDIR)
    kind = json.loads((model / FORMAT_FILE).read_text())["kind"]
    with written_whole(target, replace=True) as staging:
        shutil.copytree(model, staging, dirs_exist_ok=True)
        (staging / CARD_FILE).write_text(model_card(facts, kind))
        (staging / EVIDENCE_FILE).write_text(json.dumps(facts, indent=2) + "\n")
    logger.info("export | %s -> %s (test accuracy %s)", training.name, target, _percent(facts["test_accuracy"]))
    return target


def push_to_hub(folder: Location, repo: str) -> str:
    """Upload an exported folder to the Hugging Face Hub as ``repo``; its URL. Offline, a clear refusal."""
    import huggingface_hub
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE:
        raise ExportError(
            f"HF_HUB_OFFLINE is set: not pushing to {repo}. The folder is at {folder}; push it when online with "
            f"`hf upload {repo} {folder}`"
        )
    api = huggingface_hub.HfApi()
    try:
        api.create_repo(repo, exist_ok=True)
        commit = api.upload_folder(repo_id=repo, folder_path=str(local_copy(folder)))
    except Exception as error:  # noqa: BLE001 - the network, the token, the repo: each reported, the folder kept
        raise ExportError(
            f"could not push to {repo} ({str(error).splitlines()[0][:200]}); the folder is at {folder}: check "
            f"HF_TOKEN and the network, then `hf upload {repo} {folder}`"
        ) from None
    return commit.commit_url
