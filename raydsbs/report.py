"""The report: a results table per method and training-set fraction, and the plot of the paper's
main figure (test accuracy against training-set size, one line per method)."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from raydsbs.config import Config, config_hash
from raydsbs.rundir import RunDir

PLOT_NAME = "accuracy_vs_fraction.png"
GROUP_KEYS = ("method", "rationale_weight", "train_fraction")


def collect_results(run: RunDir) -> list[dict]:
    """Metrics of every evaluated student in the run (sweep trials and single trainings)."""
    return [json.loads(path.read_text()) for path in sorted(run.student.glob("*/metrics.json"))]


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def summarize(results: list[dict]) -> list[dict]:
    """One row per (method, λ, fraction): accuracies in %, mean ± standard deviation over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for metrics in results:
        groups[tuple(metrics[key] for key in GROUP_KEYS)].append(metrics)
    rows = []
    for key in sorted(groups):
        members = groups[key]
        rows.append({
            **dict(zip(GROUP_KEYS, key)),
            "seeds": len(members),
            "val_accuracy": _mean_spread([m["val_accuracy"] for m in members]),
            "test_accuracy": _mean_spread([m["test_accuracy"] for m in members]),
            "test_mean": statistics.mean(m["test_accuracy"] for m in members),
        })
    return rows


def results_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`summarize` rows."""
    lines = ["| method | λ | train fraction | seeds | val acc % | test acc % |", "|---|---|---|---|---|---|"]
    for row in rows:
        weight = f"{row['rationale_weight']:g}" if row["method"] == "step_by_step" else "–"
        lines.append(f"| {row['method']} | {weight} | {row['train_fraction']:g} | {row['seeds']} | "
                     f"{row['val_accuracy']} | {row['test_accuracy']} |")
    return "\n".join(lines)


def plot_accuracy_vs_fraction(rows: list[dict], teacher_accuracy: float | None, path: Path) -> None:
    """Test accuracy (%) against training-set fraction (%), one line per method (and λ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        name = row["method"].replace("_", " ")
        if row["method"] == "step_by_step":
            name += f" (λ={row['rationale_weight']:g})"
        lines[name].append((100 * row["train_fraction"], 100 * row["test_mean"]))
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, points in sorted(lines.items()):
        xs, ys = zip(*sorted(points))
        axes.plot(xs, ys, marker="o", label=name)
    if teacher_accuracy is not None:
        axes.axhline(100 * teacher_accuracy, color="gray", linestyle="--", label="teacher, few-shot (train split)")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("training-set size (% of the train split)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Student accuracy vs training-set size")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _teacher_lines(teacher: dict) -> list[str]:
    if not teacher:
        return ["No teacher outputs in this run."]
    rejected = ", ".join(f"{reason} {count}" for reason, count in sorted(teacher.get("rejected", {}).items()))
    return [
        f"- rows sent to the teacher: {teacher['rows']}; kept {teacher['kept']}; rejected: {rejected or 'none'}",
        f"- teacher accuracy against gold on the train split: {100 * teacher['teacher_accuracy_train']:.1f} %",
        f"- generated tokens: {teacher['generated_tokens']} in {teacher.get('seconds', '?')} s "
        f"({teacher.get('generated_tokens_per_s', '?')} tokens/s)",
    ]


def write_report(config: Config, run: RunDir) -> tuple[Path, str]:
    """Write report.md and the plot from what the run holds; returns (report path, results table)."""
    rows = summarize(collect_results(run))
    if not rows:
        raise FileNotFoundError(f"no evaluated students in {run.student}; run `raydsbs train` or `raydsbs sweep` first")
    summary = run.read_summary()
    teacher = summary.get("teacher", {})
    plot = run.plots / PLOT_NAME
    plot_accuracy_vs_fraction(rows, teacher.get("teacher_accuracy_train"), plot)
    table = results_table(rows)
    corpus = summary.get("corpus", {})
    text = "\n".join([
        f"# raydsbs report: {run.root.name}",
        "",
        f"Task `{config.task.name}`, teacher `{config.teacher.model}` ({config.teacher.backend}), "
        f"student `{config.student.pretrained or config.student.preset}` "
        f"(task marker on the {config.student.task_marker}); config hash `{config_hash(config)}`.",
        f"Corpus: {corpus.get('train', '?')} train / {corpus.get('val', '?')} val / {corpus.get('test', '?')} test rows.",
        "",
        "## Teacher",
        *_teacher_lines(teacher),
        "",
        "## Students",
        "Accuracy in %, mean ± standard deviation over seeds. Model selection used the validation split only; "
        "the test split was scored once per model.",
        "",
        table,
        "",
        f"![accuracy vs training-set size](plots/{PLOT_NAME})",
        "",
    ])
    run.report_file.write_text(text)
    return run.report_file, table
