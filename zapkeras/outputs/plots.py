"""Figures a person would rather look at than read (SPEC §4 plots/)."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def transfer_curves(curves_by_condition, metric="test_accuracy_seen"):
    """Sequential-transfer accuracy vs classes learned, one line a condition.

    `curves_by_condition` maps a condition name to the list of runs (each a
    dict with a "curve") at that condition's best learning rate. Returns the
    figure as PNG bytes.
    """
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, runs in curves_by_condition.items():
        points = runs[0]["curve"]
        x_key = "classes_seen" if "classes_seen" in points[0] else "step"
        x = [p[x_key] for p in points]
        y = [
            sum(r["curve"][i][metric] for r in runs) / len(runs)
            for i in range(len(points))
        ]
        ax.plot(x, y, marker="o", label=name)
    ax.set_xlabel(x_key.replace("_", " "))
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("Transfer (best learning rate)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _png(fig)


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
    ax.set_xlabel("step")
    ax.set_ylabel("task loss (support images)")
    ax.set_title(f"Per-task losses, {tasks} tasks (blue first, red last)")
    fig.tight_layout()
    return _png(fig)


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
    return _png(fig)
