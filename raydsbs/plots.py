"""The report's figures, drawn like the paper's: test accuracy against training-set size per
method, against student size, and against λ, with the reference lines (the teacher's few-shot
accuracy, the untrained student, the trivial floor) across each."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable

from raydsbs.storage import Location

Row = dict  # a row of raydsbs.report.summarize
References = dict[str, float]  # label -> test accuracy of a horizontal reference line
STYLES = ("--", ":", "-.")


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    return plt, figure, axes


def _draw(
    rows: list[Row],
    x: Callable[[Row], float],
    series: Callable[[Row], str],
    references: References,
    path: Location,
    xlabel: str,
    title: str,
    log_x: bool = False,
) -> Location:
    """One line per series: mean test accuracy with its spread over seeds as error bars."""
    plt, figure, axes = _figure()
    lines: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for row in rows:
        lines[series(row)].append((x(row), 100 * row["test_mean"], 100 * row["test_sd"]))
    for name, points in sorted(lines.items()):
        xs, ys, errors = zip(*sorted(points), strict=True)
        axes.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=name)
    for (label, accuracy), style in zip(references.items(), STYLES, strict=False):
        axes.axhline(100 * accuracy, color="gray", linestyle=style, label=label)
    if log_x:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ScalarFormatter())  # 1, 8, 250: not 10^0
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_ylim(bottom=0)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    plt.close(figure)
    path.write_bytes(image.getvalue())
    return path


def accuracy_vs_fraction(
    rows: list[Row], series: Callable[[Row], str], references: References, path: Location
) -> Location:
    return _draw(
        rows,
        lambda r: 100 * r["train.train_fraction"],
        series,
        references,
        path,
        "training-set size (% of the train split)",
        "Student accuracy vs training-set size",
    )


def _at_largest_fraction(rows: list[Row]) -> tuple[list[Row], str]:
    """The rows trained on the largest training-set fraction, and a title note saying which."""
    largest = max(r["train.train_fraction"] for r in rows)
    return [r for r in rows if r["train.train_fraction"] == largest], f" ({100 * largest:g} % of the train split)"


def accuracy_vs_student_size(
    rows: list[Row], series: Callable[[Row], str], references: References, path: Location
) -> Location:
    rows, note = _at_largest_fraction([r for r in rows if r.get("parameters")])
    return _draw(
        rows,
        lambda r: r["parameters"] / 1e6,
        series,
        references,
        path,
        "student parameters (millions, log scale)",
        "Student accuracy vs student size" + note,
        log_x=True,
    )


def accuracy_vs_rationale_weight(
    rows: list[Row], series: Callable[[Row], str], references: References, path: Location
) -> Location:
    rows, note = _at_largest_fraction([r for r in rows if r["train.method"] == "step_by_step"])
    return _draw(
        rows,
        lambda r: r["train.rationale_weight"],
        series,
        references,
        path,
        "λ (weight of the rationale loss)",
        "Step-by-step: accuracy vs λ" + note,
    )
