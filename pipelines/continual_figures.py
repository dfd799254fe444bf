"""The figures of a continual study (hernandez-garcia2025, lee2024,
berariu2021), from the runs' results.json["continual"] and
curves/continual_online_accuracy.json: mean ± std over seeds, one line a
method."""

import os

import numpy as np

from pipelines import grid
from pipelines import stats
from zapkeras.outputs import files
from zapkeras.outputs import plots

# hernandez-garcia2025 App. C's correlates of lost plasticity.
CORRELATES = {
    "dead_fraction": "dead units (fraction)",
    "feature_srank": "stable rank of the features",
    "mean_abs_weight": "mean |weight|",
    "gradient_magnitude": "mean |gradient|",
}
MAX_POINTS = 400  # learning-curve points after binning


def _continual(run, root):
    if not grid.is_done(run, root):
        return {}
    return grid.load(run, root).get("continual") or {}


def per_run_lists(cells, root, get):
    """{cell: [runs, longest] array} of get(results["continual"]), a list
    per run; cells where no run has one are left out."""
    out = {}
    for cell, runs in cells.items():
        array = stats.stack([get(_continual(r, root)) for r in runs])
        if array is not None:
            out[cell] = array
    return out


def _padded(series, length):
    return {
        name: np.pad(
            a, ((0, 0), (0, length - a.shape[1])), constant_values=np.nan
        )
        for name, a in series.items()
    }


def _lines(rep, name, panels, xlabel, title, caption):
    """A mean ± std figure of {y label: {cell: [runs, points]}} against
    1, 2, ... (panels without data are left out; "{panels}" in the caption
    becomes the labels of those shown)."""
    panels = {label: series for label, series in panels.items() if series}
    if not panels:
        return
    length = max(a.shape[1] for s in panels.values() for a in s.values())
    panels = {label: _padded(s, length) for label, s in panels.items()}
    x = np.arange(1, length + 1)
    caption = caption.replace("{panels}", ", ".join(panels))
    rep.figure(name, plots.mean_std_lines(panels, x, xlabel, title), caption)


def task_panels(rep, name, title, cells, root, panels, xlabel="task"):
    """One figure of per-task lists: `panels` {results key: y label}."""
    _lines(
        rep,
        name,
        {
            label: per_run_lists(cells, root, lambda c, k=key: c.get(k))
            for key, label in panels.items()
        },
        xlabel,
        title,
        f"{title}: {{panels}} per {xlabel}, mean ± std over seeds (n = "
        "seeds that finished).",
    )


def correlates(rep, name, title, cells, root):
    """The diagnostics measured at each task's start, one panel each."""
    _lines(
        rep,
        name,
        {
            label: per_run_lists(
                cells,
                root,
                lambda c, k=key: (c.get("diagnostics_per_task") or {}).get(k),
            )
            for key, label in CORRELATES.items()
        },
        "task (measured at its start)",
        title,
        f"{title}: correlates of lost plasticity on a probe batch before "
        "each task (hernandez-garcia2025 App. C), mean ± std over seeds.",
    )


def learning_curves(rep, name, title, cells, root):
    """Online accuracy over training: every window of batches of every
    task in order, binned to at most MAX_POINTS points."""
    series, window, size = {}, None, 1
    for cell, runs in cells.items():
        curves = []
        for run in runs:
            path = os.path.join(
                run.output_dir(root), "curves", "continual_online_accuracy.json"
            )
            record = files.read_json(path) if grid.is_done(run, root) else None
            if record is not None:
                window = record["window_batches"]
                curves.append(sum(record["windows_per_task"], []))
        array = stats.stack(curves)
        if array is not None:
            series[cell] = array
    if not series:
        return
    length = max(a.shape[1] for a in series.values())
    series = _padded(series, length)
    binned = {}
    for cell, array in series.items():
        binned[cell], size = stats.bin_columns(array, MAX_POINTS)
    x = (np.arange(next(iter(binned.values())).shape[1]) + 1) * size * window
    rep.figure(
        name,
        plots.mean_std_lines(
            {"online accuracy": binned}, x, "batches trained", title
        ),
        f"{title}: online accuracy (each batch before its update) in "
        f"windows of {window} batches, {size} windows a point; mean ± std "
        "over seeds.",
    )


def accuracy_matrix(rep, name, title, runs, root):
    """The mean over seeds of a[i][j] (test accuracy on task j after task
    i), when the runs measured it."""
    matrices = [_continual(r, root).get("accuracy_matrix") for r in runs]
    matrices = [
        [[np.nan if v is None else v for v in row] for row in m]
        for m in matrices
        if m
    ]
    if not matrices:
        return
    mean = stats.nanmean(np.array(matrices, float), axis=0)
    rep.figure(
        name,
        plots.accuracy_matrix(mean, f"{title}: accuracy matrix"),
        f"{title}: test accuracy on task j after training task i (tasks "
        f"from 1), mean of {len(matrices)} seeds.",
    )
