"""Curves of a training round, rendered from its metrics with matplotlib to SVG."""

import io

# Metrics worth a panel, in the order shown; any other reported metric follows them.
PREFERRED = ("loss", "eval_loss", "reward_accuracy", "mean_reward", "kl", "learning_rate")


def run_curves_svg(curves: dict[str, dict[str, list]], *, title: str = "") -> str:
    """Draw one panel per metric, one line per stage that reported it; return the SVG text."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    metrics = [m for m in PREFERRED if any(m in series for series in curves.values())]
    metrics += sorted({m for series in curves.values() for m in series} - set(metrics))
    columns = 2 if len(metrics) > 1 else 1
    rows = max(1, (len(metrics) + columns - 1) // columns)
    figure = Figure(figsize=(5.2 * columns, 2.6 * rows), layout="constrained")
    if title:
        figure.suptitle(title)
    if not metrics:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no metrics reported yet", ha="center", va="center")
        axes.set_axis_off()
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        for stage, series in curves.items():
            points = series.get(metric)
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], label=stage, linewidth=1.4,
                          marker="o" if len(points) < 3 else None)
        axes.set_title(metric.replace("_", " "), fontsize=10)
        axes.set_xlabel("step", fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    return buffer.getvalue()
