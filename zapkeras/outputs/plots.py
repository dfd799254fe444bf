"""Figures a person would rather look at than read (OUTPUT_DIR/plots/)."""

import io
import warnings

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402


def png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


# A transfer curve's x key: (title, x label, y label). Sequential transfer
# scores the classes seen so far; i.i.d. transfer trains on all of them.
_TRANSFER = {
    "classes_seen": (
        "Sequential transfer",
        "classes learned",
        "test accuracy on the classes seen",
    ),
    "step": ("i.i.d. transfer", "training step", "test accuracy"),
}


def transfer_curves(curves_by_condition):
    """Transfer test accuracy, mean ± std over runs, one line a condition.

    `curves_by_condition` maps a condition name to the list of runs (each a
    dict with a "curve") at that condition's best learning rate; sequential
    curves are plotted against classes learned, i.i.d. ones against
    training steps. Returns the figure as PNG bytes.
    """
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, runs in curves_by_condition.items():
        points = runs[0]["curve"]
        x_key = "classes_seen" if "classes_seen" in points[0] else "step"
        x = [p[x_key] for p in points]
        y = np.array(
            [[p["test_accuracy_seen"] for p in r["curve"]] for r in runs]
        )
        mean, std = y.mean(0), y.std(0)
        (line,) = ax.plot(x, mean, marker="o", label=f"{name} (n={len(runs)})")
        ax.fill_between(
            x, mean - std, mean + std, color=line.get_color(), alpha=0.2
        )
    title, xlabel, ylabel = _TRANSFER[x_key]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_title(f"{title}: {ylabel} (best learning rate)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return png(fig)


def task_losses(losses, every):
    """frati2025 Fig. 4: one loss line per task, cool→warm by training order.

    `losses` is [points, tasks], tasks in training order, one point every
    `every` steps.
    """
    points, tasks = losses.shape
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    colors = plt.cm.coolwarm([i / max(tasks - 1, 1) for i in range(tasks)])
    steps = [(p + 1) * every for p in range(points)]
    for task in range(tasks):
        ax.plot(steps, losses[:, task], color=colors[task], linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("task loss (support images)")
    ax.set_title(f"Per-task losses, {tasks} tasks (blue first, red last)")
    fig.tight_layout()
    return png(fig)


def layer_similarity(layers, similarity, title):
    """frati2025 Fig. 2b: per-layer cosine similarity [layers, steps]."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    steps = range(1, similarity.shape[1] + 1)
    for name, row in zip(layers, similarity):
        ax.plot(steps, row, label=name)
    ax.set_xlabel("step after the zap")
    ax.set_ylabel("cosine similarity to control")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return png(fig)


def task_accuracies(series, title):
    """Accuracy per task of one run, a line per series {name: [per task]}
    (None where not measured), tasks counted from 1 on integer ticks."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, values in series.items():
        values = [np.nan if v is None else v for v in values]
        ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("task")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return png(fig)


def accuracy_matrix(matrix, title):
    """Heatmap of a[i][j], test accuracy on task j after training task i
    (0-based arrays, NaN or None where not measured), tasks labelled from 1
    as in the console."""
    a = np.array([[np.nan if v is None else v for v in row] for row in matrix])
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    image = ax.imshow(a, vmin=0, vmax=1, cmap="viridis", origin="upper")
    fig.colorbar(image, ax=ax, label="test accuracy")
    one_based = ticker.FuncFormatter(lambda v, _: f"{int(v) + 1}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.MaxNLocator(integer=True))
        axis.set_major_formatter(one_based)
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    ax.set_title(title)
    fig.tight_layout()
    return png(fig)


def _mean_std(runs):
    """Column mean and std over runs, NaN where no run has a value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.nanmean(runs, 0), np.nanstd(runs, 0)


def mean_std_lines(panels, x, xlabel, title):
    """Mean ± std over runs (seeds), one line a series, one subplot a panel.

    `panels` maps a y-axis label to {series name: [runs, len(x)] array}
    (NaN where a run has no value); used for the studies' per-task
    accuracies, learning curves and plasticity correlates.
    """
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1 + 5 * cols, 0.5 + 3.5 * rows), dpi=100
    )
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    names = dict.fromkeys(n for series in panels.values() for n in series)
    colors = {name: f"C{i % 10}" for i, name in enumerate(names)}
    for ax, (ylabel, series) in zip(axes, panels.items()):
        for name, runs in series.items():
            runs = np.asarray(runs, float).reshape(-1, len(x))
            mean, std = _mean_std(runs)
            ax.plot(
                x,
                mean,
                color=colors[name],
                marker="." if len(x) <= 40 else None,
                label=f"{name} (n={len(runs)})",
            )
            ax.fill_between(
                x, mean - std, mean + std, color=colors[name], alpha=0.2
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return png(fig)


def grouped_bars(categories, series, ylabel, title):
    """Mean ± std bars: a group per category, a bar per series.

    `series` maps a name to one list of run values per category (None
    entries are left out).
    """
    fig, ax = plt.subplots(
        figsize=(min(16, 3 + 0.8 * len(categories) * len(series)), 4), dpi=100
    )
    width = 0.8 / len(series)
    for i, (name, per_category) in enumerate(series.items()):
        stats = [
            _mean_std(
                np.array([v for v in values if v is not None] or [np.nan])
            )
            for values in per_category
        ]
        ax.bar(
            np.arange(len(categories)) + (i - (len(series) - 1) / 2) * width,
            [m for m, _ in stats],
            width,
            yerr=[s for _, s in stats],
            capsize=3,
            label=name,
        )
    ax.set_xticks(
        np.arange(len(categories)),
        categories,
        rotation=20 if len(categories) > 3 else 0,
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return png(fig)
