"""Figures a person would rather look at than read (SPEC §4 plots/)."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def transfer_curves(curves_by_condition, metric="test_accuracy_seen"):
    """Sequential-transfer accuracy vs classes learned, one line a condition.

    `curves_by_condition` maps a condition name to the list of runs (each a
    dict with a "curve") at that condition's best learning rate. Returns the
    figure as PNG bytes.
    """
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, runs in curves_by_condition.items():
        points = runs[0]["curve"]
        x = [p["classes_seen"] for p in points]
        y = [
            sum(r["curve"][i][metric] for r in runs) / len(runs)
            for i in range(len(points))
        ]
        ax.plot(x, y, marker="o", label=name)
    ax.set_xlabel("classes learned")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("Sequential transfer (best learning rate)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
