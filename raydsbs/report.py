"""The report: a table of every trained student (mean ± spread over seeds, grouped by every
config key the trainings differ in), figures like the paper's, the teacher as a baseline, the
smallest training-set fraction at which a student beats it, and what it all cost.
Written as report.md and report.html, with PNG plots in plots/."""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass

import yaml

from raydsbs import plots
from raydsbs.config import Config, config_hash
from raydsbs.cost import cost_lines
from raydsbs.data.corpus import held_out_accuracy, seen_test_ids
from raydsbs.rundir import RunDir
from raydsbs.storage import Location

BASE_KEYS = ("train.method", "train.rationale_weight", "train.train_fraction")  # the paper's axes, always shown
SEED_KEY = "train.seed"  # what a row averages over
LABELS = {
    "train.method": "method",
    "train.rationale_weight": "λ",
    "train.train_fraction": "train fraction",
    "student.preset": "student",
    "student.pretrained": "pretrained",
    "student.task_marker": "task marker",
}
PLOT_NAME = "accuracy_vs_fraction.png"


@dataclass
class Training:
    """One evaluated student: its student/train settings (dotted keys), metrics and training time."""

    name: str
    settings: dict
    metrics: dict
    seconds: float | None


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def collect_trainings(run: RunDir) -> list[Training]:
    """Every evaluated student in the run (sweep trials and single trainings)."""
    trainings = []
    for metrics_file in run.student.glob("*/metrics.json"):
        folder = metrics_file.parent
        config = yaml.safe_load((folder / "config.yaml").read_text())
        training_file = folder / "training.json"
        training = json.loads(training_file.read_text()) if training_file.is_file() else {}
        trainings.append(
            Training(
                folder.name,
                _flatten({"student": config["student"], "train": config["train"]}),
                json.loads(metrics_file.read_text()),
                training.get("seconds"),
            )
        )
    return trainings


def row_keys(trainings: list[Training]) -> list[str]:
    """The paper's axes, then every other student/train key whose value differs between trainings (not the seed)."""
    keys = sorted(set().union(*(t.settings for t in trainings)))
    varying = [
        key
        for key in keys
        if key not in BASE_KEYS and key != SEED_KEY and len({json.dumps(t.settings.get(key)) for t in trainings}) > 1
    ]
    return [*BASE_KEYS, *varying]


def _sort_key(values: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in values)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(trainings: list[Training], keys: list[str]) -> list[dict]:
    """One row per combination of ``keys``: accuracies (fractions) as mean and standard deviation over seeds."""
    groups: dict[tuple, list[Training]] = defaultdict(list)
    for training in trainings:
        groups[tuple(training.settings.get(key) for key in keys)].append(training)
    rows = []
    for values in sorted(groups, key=_sort_key):
        members = groups[values]
        val_mean, val_sd = _mean_sd([t.metrics["val_accuracy"] for t in members])
        test_mean, test_sd = _mean_sd([t.metrics["test_accuracy"] for t in members])
        seconds = [t.seconds for t in members if t.seconds is not None]
        examples = [t.metrics["examples"] for t in members if t.metrics.get("examples") is not None]
        tokens = [t.metrics["test_tokens_per_answer"] for t in members if "test_tokens_per_answer" in t.metrics]
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "seeds": len(members),
                "val_mean": val_mean,
                "val_sd": val_sd,
                "test_mean": test_mean,
                "test_sd": test_sd,
                "seconds": statistics.mean(seconds) if seconds else None,
                "examples": statistics.mean(examples) if examples else None,
                "tokens_per_answer": statistics.mean(tokens) if tokens else None,
                "parameters": members[0].metrics.get("parameters"),
            }
        )
    return rows


def _percent(mean: float, sd: float, seeds: int) -> str:
    return f"{100 * mean:.1f}" if seeds == 1 else f"{100 * mean:.1f} ± {100 * sd:.1f}"


def _cell(key: str, row: dict) -> str:
    value = row[key]
    if key == "train.rationale_weight" and row["train.method"] != "step_by_step":
        return "–"  # λ means nothing to the standard methods
    return f"{value:g}" if isinstance(value, float) else str(value)


def table_cells(rows: list[dict], keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the results table, shared by the Markdown and HTML reports."""
    header = [LABELS.get(key, key) for key in keys] + [
        "seeds",
        "examples",
        "val acc %",
        "test acc %",
        "tokens/answer",
        "train time s",
    ]
    cells = [
        [_cell(key, row) for key in keys]
        + [
            str(row["seeds"]),
            _number(row["examples"]),
            _percent(row["val_mean"], row["val_sd"], row["seeds"]),
            _percent(row["test_mean"], row["test_sd"], row["seeds"]),
            _number(row["tokens_per_answer"], "{:.1f}"),
            _number(row["seconds"]),
        ]
        for row in rows
    ]
    return header, cells


def _number(value: float | None, spec: str = "{:.0f}") -> str:
    return "?" if value is None else spec.format(value)


def results_table(rows: list[dict], keys: list[str]) -> str:
    """The Markdown results table."""
    header, cells = table_cells(rows, keys)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def series_name(row: dict, keys: list[str], leave_out: tuple[str, ...]) -> str:
    """A plot line's label: the method (with λ for step-by-step) and every other key that varies."""
    name = row["train.method"].replace("_", " ")
    if row["train.method"] == "step_by_step" and "train.rationale_weight" not in leave_out:
        name += f" (λ={row['train.rationale_weight']:g})"
    extra = [f"{LABELS.get(k, k)}={row[k]}" for k in keys if k not in BASE_KEYS and k not in leave_out]
    return ", ".join([name, *extra])


def smallest_fraction_beating(rows: list[dict], keys: list[str], teacher: float | None) -> list[str]:
    """Per line of the main figure: the smallest training-set fraction whose mean test accuracy beats the teacher."""
    if teacher is None:
        return ["No teacher accuracy on the test split in this run (teacher.answer_heldout=false, or no teacher)."]
    lines: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        lines[series_name(row, keys, ("train.train_fraction",))].append(row)
    out = []
    for name, members in sorted(lines.items()):
        beating = sorted(r["train.train_fraction"] for r in members if r["test_mean"] > teacher)
        best = max(members, key=lambda r: r["test_mean"])
        out.append(
            f"- {name}: "
            + (
                f"beats the teacher from {100 * beating[0]:g} % of the train split"
                if beating
                else f"does not beat the teacher (best {100 * best['test_mean']:.1f} % at "
                f"{100 * best['train.train_fraction']:g} %)"
            )
        )
    return out


def teacher_source(config: Config) -> str:
    """Who the teacher was: the replayed file, or the model, its backend and its shots."""
    if config.teacher.backend == "replay":
        return f"replayed completions from {config.teacher.replay_file or config.task.data_dir}"
    return f"{config.teacher.model} ({config.teacher.backend}, {config.teacher.num_shots}-shot)"


def references(summary: dict) -> dict[str, float]:
    """The reference lines on the test split: the teacher (where it answered the test rows), the untrained
    student and the trivial floor."""
    teacher, baselines = summary.get("teacher", {}), summary.get("baselines", {})
    lines = {
        "teacher, few-shot": teacher.get("teacher_accuracy_test"),
        "untrained student": baselines.get("untrained_student_test_accuracy"),
        "trivial floor": baselines.get("floor_test_accuracy"),
    }
    return {label: accuracy for label, accuracy in lines.items() if accuracy is not None}


def draw_plots(rows: list[dict], keys: list[str], lines: dict[str, float], folder: Location) -> list[Location]:
    """The main figure always; student size and λ figures when the trainings vary them."""
    made = [
        plots.accuracy_vs_fraction(
            rows, lambda r: series_name(r, keys, ("train.train_fraction",)), lines, folder / PLOT_NAME
        )
    ]
    size_keys = ("student.preset", "student.pretrained")
    if any(key in keys for key in size_keys) and sum(1 for r in rows if r.get("parameters")) > 1:
        made.append(
            plots.accuracy_vs_student_size(
                rows, lambda r: series_name(r, keys, size_keys), lines, folder / "accuracy_vs_student_size.png"
            )
        )
    weights = {r["train.rationale_weight"] for r in rows if r["train.method"] == "step_by_step"}
    if len(weights) > 1:
        made.append(
            plots.accuracy_vs_rationale_weight(
                rows,
                lambda r: series_name(r, keys, ("train.rationale_weight",)),
                lines,
                folder / "accuracy_vs_rationale_weight.png",
            )
        )
    return made


def _teacher_lines(teacher: dict) -> list[str]:
    if not teacher:
        return ["No teacher outputs in this run."]
    rejected = ", ".join(f"{reason} {count}" for reason, count in sorted(teacher.get("rejected", {}).items()))
    return [
        f"- rows sent to the teacher: {teacher['rows']}; kept {teacher['kept']}; rejected: {rejected or 'none'}",
        f"- teacher accuracy against gold on the train split: {100 * teacher['teacher_accuracy_train']:.1f} %",
        *(
            f"- teacher accuracy on the {split} split: {100 * teacher[f'teacher_accuracy_{split}']:.1f} % of "
            f"{teacher[f'teacher_rows_{split}']} rows"
            for split in ("val", "test")
            if teacher.get(f"teacher_accuracy_{split}") is not None
        ),
        f"- generated tokens: {teacher['generated_tokens']} in {teacher.get('seconds', '?')} s "
        f"({teacher.get('generated_tokens_per_s', '?')} tokens/s), reading {teacher.get('prompt_tokens', '?')} "
        "prompt tokens",
    ]


def _baseline_lines(summary: dict) -> list[str]:
    baselines = summary.get("baselines")
    if not baselines:
        return ["Not measured in this run (`raydsbs run` and `raydsbs sweep` measure them)."]
    return [
        f"- untrained student ({baselines['untrained_student']}, the same prompt and parser, no training): "
        f"{100 * baselines['untrained_student_test_accuracy']:.1f} % on the test split",
        f"- trivial floor ({baselines['floor']}): {100 * baselines['floor_test_accuracy']:.1f} %",
    ]


FAIR_ROWS = (
    "At a training fraction and seed, every method draws the same train rows. A row whose teacher output "
    "was rejected gives its gold label to standard_finetune and to step_by_step with gold labels (no "
    "rationale), and nothing to standard_distill, cot_finetune or teacher-labelled step_by_step; "
    "'examples' counts what each training learned from."
)


def inputs_seen_line(corpus: dict) -> list[str]:
    """What the corpus stage found of held-out inputs that train repeats (nothing for a run written before it
    counted them)."""
    seen = corpus.get("inputs_seen_in_train")
    if seen is None:
        return []
    if not any(seen.values()):
        return ["No validation or test row repeats a train row's input (compared case and spacing aside)."]
    parts = [f"{seen[split]} of the {corpus.get(split, '?')} {split} rows" for split in ("test", "val") if seen[split]]
    where = " (below: the accuracies without them)" if seen["test"] else ""
    return [
        f"Beware: {' and '.join(parts)} repeat a train row's input (case and spacing aside): a student may have "
        f"learnt those answers, so its accuracy on them is not a held-out one{where}."
    ]


def unseen_test_lines(
    run: RunDir, summary: dict, trainings: list[Training], rows: list[dict], keys: list[str]
) -> list[str]:
    """Where the corpus stage found test rows that repeat a train row's input: the teacher's and every table
    row's accuracy on the other test rows alone (the held-out accuracy), from their per-row answers."""
    if not summary.get("corpus", {}).get("inputs_seen_in_train", {}).get("test"):
        return []
    seen = seen_test_ids(run)
    teacher = held_out_accuracy(run.heldout_file, "teacher_correct", seen)
    unseen = {t.name: held_out_accuracy(run.predictions_file(run.training(t.name)), "correct", seen) for t in trainings}
    test_rows = summary["corpus"]["test"]
    lines = [f"{test_rows - len(seen)} of the {test_rows} test rows have an input no train row has; on them alone:"]
    baselines = summary.get("baselines", {})
    for name, accuracy in (
        ("the teacher", teacher),
        ("the untrained student", baselines.get("untrained_student_unseen_test_accuracy")),
        (f"the trivial floor ({baselines.get('floor')})", baselines.get("floor_unseen_test_accuracy")),
    ):
        if accuracy is not None:
            lines.append(f"- {name}: {100 * accuracy:.1f} %")
    for row in rows:
        members = [t.name for t in trainings if all(t.settings.get(key) == row[key] for key in keys)]
        scores = [unseen[name] for name in members if unseen[name] is not None]
        if scores:
            mean, sd = _mean_sd(scores)
            lines.append(
                f"- {series_name(row, keys, ())}, train fraction {row['train.train_fraction']:g}: "
                f"{_percent(mean, sd, len(scores))} %"
            )
    return lines


def _html(
    title: str,
    intro: list[str],
    sections: list[tuple[str, list[str]]],
    header: list[str],
    cells: list[list[str]],
    images: list[Location],
) -> str:
    """The same report as one self-contained HTML page (images by relative path)."""

    def items(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(line.lstrip('- '))}</li>" for line in lines) + "</ul>"

    table = (
        "<table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
        + "</table>"
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p>{html.escape(line)}</p>" for line in intro),
        "<h2>Students</h2>",
        "<p>Accuracy in %, mean ± standard deviation over seeds.</p>",
        table,
        *(f'<p><img src="plots/{image.name}" alt="{html.escape(image.stem)}"></p>' for image in images),
    ]
    for heading, lines in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", items(lines)]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(config: Config, run: RunDir) -> tuple[Location, str]:
    """Write report.md, report.html and the plots from what the run holds; returns (report path, results table)."""
    trainings = collect_trainings(run)
    if not trainings:
        raise FileNotFoundError(f"no evaluated students in {run.student}; run `raydsbs train` or `raydsbs sweep` first")
    keys = row_keys(trainings)
    rows = summarize(trainings, keys)
    summary = run.read_summary()
    teacher = summary.get("teacher", {})
    lines = references(summary)  # all on the test split the students are scored on
    teacher_accuracy = lines.get("teacher, few-shot")
    images = draw_plots(rows, keys, lines, run.plots)
    table = results_table(rows, keys)
    corpus = summary.get("corpus", {})
    title = f"raydsbs report: {run.root.name}"
    intro = [
        f"Task {config.task.name}, teacher: {teacher_source(config)}; config hash {config_hash(config)}.",
        f"Corpus: {corpus.get('train', '?')} train / {corpus.get('val', '?')} val / "
        f"{corpus.get('test', '?')} test rows. Model selection used the validation split only; the test split "
        f"was scored once per model, and the teacher, the untrained student and the floor on the same rows.",
        *inputs_seen_line(corpus),
        FAIR_ROWS,
    ]
    sections = [
        ("Test rows that no train row repeats", unseen_test_lines(run, summary, trainings, rows, keys)),
        ("Teacher", _teacher_lines(teacher)),
        ("Baselines", _baseline_lines(summary)),
        ("Smallest training set that beats the teacher", smallest_fraction_beating(rows, keys, teacher_accuracy)),
        ("Cost", cost_lines(config, teacher, trainings, rows, keys)),
    ]
    sections = [(heading, lines) for heading, lines in sections if lines]
    markdown = [
        f"# {title}",
        "",
        *intro,
        "",
        "## Students",
        "Accuracy in %, mean ± standard deviation over seeds.",
        "",
        table,
        "",
        *(f"![{image.stem.replace('_', ' ')}](plots/{image.name})" for image in images),
        "",
    ]
    for heading, lines in sections:
        markdown += [f"## {heading}", *lines, ""]
    run.report_file.write_text("\n".join(markdown))
    run.report_file.with_suffix(".html").write_text(_html(title, intro, sections, *table_cells(rows, keys), images))
    return run.report_file, table
