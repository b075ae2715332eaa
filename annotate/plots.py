"""Plots for the progress page, drawn from the figures with matplotlib and served as SVG.

matplotlib is imported when a plot is drawn, not when the pages load. Figures are made with
`Figure` directly (not pyplot), which keeps no global state and is safe in threaded servers.
"""

import io

COLOURS = {"complete": "#137333", "in_progress": "#f2b705", "waiting": "#2f5bd3", "closed": "#9aa3b2"}


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _whole_numbers(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def items_svg(rows: list[dict], states) -> str:
    """Stacked horizontal bars: per task kind, its items in each state."""
    figure = _figure(7, 0.55 * len(rows) + 1.3)
    axes = figure.add_subplot()
    labels = [row["label"] for row in rows][::-1]
    left = [0] * len(rows)
    for state, title in states:
        values = [row[state] for row in rows][::-1]
        axes.barh(labels, values, left=left, label=title, color=COLOURS[state])
        left = [a + b for a, b in zip(left, values)]
    axes.set_xlabel("items")
    _whole_numbers(axes.xaxis)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(states), fontsize=8, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return _svg(figure)


def throughput_svg(per_day: dict, top: int = 8) -> str:
    """Stacked bars: submitted tasks per day, one colour per annotator (the busiest `top`)."""
    figure = _figure(7, 3)
    axes = figure.add_subplot()
    days = [day.strftime("%d %b") for day in per_day["days"]]
    people = list(per_day["people"].items())
    shown, rest = people[:top], people[top:]
    if rest:
        shown.append(("others", [sum(values) for values in zip(*(counts for _, counts in rest))]))
    positions = list(range(len(days)))
    bottom = [0] * len(days)
    for name, counts in shown:
        axes.bar(positions, counts, bottom=bottom, label=name)
        bottom = [a + b for a, b in zip(bottom, counts)]
    axes.set_xticks(positions, days)
    axes.set_ylabel("tasks submitted")
    _whole_numbers(axes.yaxis)
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    axes.grid(axis="y", alpha=0.3)
    if shown:
        axes.legend(fontsize=8, frameon=False)
    return _svg(figure)


def agreement_svg(kendall_w: list[float], taus: list[tuple[str, float]]) -> str:
    """Left: how Kendall's W spreads over candidate sets; right: each annotator's mean tau."""
    figure = _figure(7, 3)
    left, right = figure.subplots(1, 2)
    left.hist(kendall_w, bins=10, range=(0, 1), color="#2f5bd3")
    left.set_title("Kendall's W per candidate set", fontsize=10)
    left.set_xlabel("W (1 = full agreement)")
    left.set_ylabel("sets")
    _whole_numbers(left.yaxis)
    names = [name for name, _ in taus][::-1]
    values = [value for _, value in taus][::-1]
    right.barh(names, values, color=["#137333" if value >= 0 else "#b42318" for value in values])
    right.set_xlim(-1, 1)
    right.axvline(0, color="#5b6475", linewidth=0.8)
    right.set_title("Mean Kendall tau vs. the others", fontsize=10)
    right.set_xlabel("tau (1 = agrees with consensus)")
    return _svg(figure)
