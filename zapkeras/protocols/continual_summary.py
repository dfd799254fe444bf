"""results.json["continual"], curves and plots of a continual run.

Per-task lists (`online_accuracy_per_task`, `test_accuracy_per_task`,
`tortoise_test_accuracy_per_task` with a Hare & Tortoise callback), the last
task's values under the same names without `_per_task`, the accuracy
matrix and its metrics when measured, `diagnostics_per_task` and
`counters_per_task` ({name: [per task]}), and for warm-start
`fresh_test_accuracy` and `generalization_gap` = fresh − warm-started test
accuracy (berariu2021's gap). Online-accuracy windows go to
curves/continual_online_accuracy.json, figures to plots/ and TensorBoard.
"""

import os

from zapkeras.outputs import files
from zapkeras.outputs import plots
from zapkeras.protocols import diagnostics

_FINAL = (
    "average_accuracy",
    "forgetting",
    "backward_transfer",
    "forward_transfer",
    "fresh_test_accuracy",
    "generalization_gap",
)


def summarize(state, problem, context, global_step, window):
    """The results dict of a finished run; also writes curves and plots."""
    tasks = state["tasks"]
    results = problem.describe()
    for key in ("online_accuracy", "test_accuracy", "tortoise_test_accuracy"):
        if key in tasks[-1]:
            results[f"{key}_per_task"] = [r.get(key) for r in tasks]
            results[key] = tasks[-1][key]
    if "row" in tasks[-1]:
        matrix = [r["row"] for r in tasks]
        results["accuracy_matrix"] = matrix
        init = state.get("init_accuracy")
        if init is not None:
            results["init_accuracy"] = init
        results.update(diagnostics.transfer_metrics(matrix, init))
    for group in ("diagnostics", "counters"):
        keys = sorted({k for r in tasks for k in r[group]})
        results[f"{group}_per_task"] = {
            k: [r[group].get(k) for r in tasks] for k in keys
        }
    if "fresh_test_accuracy" in state:
        fresh = state["fresh_test_accuracy"]
        results["fresh_test_accuracy"] = fresh
        results["generalization_gap"] = fresh - results["test_accuracy"]
    results["global_steps"] = global_step
    results["wall_seconds"] = state.get("wall_seconds", 0.0)
    _write(results, tasks, context, window)
    return results


def _write(results, tasks, context, window):
    files.write_json(
        context.curves_path("continual_online_accuracy.json"),
        {
            "window_batches": window,
            "windows_per_task": [r["online_windows"] for r in tasks],
        },
    )
    final = {k: results[k] for k in _FINAL if results.get(k) is not None}
    if final:  # `continual/…` steps are task numbers: at the last task
        context.writer.scalars("continual", final, len(tasks))
    series = {
        name: results[f"{key}_per_task"]
        for name, key in (
            ("online", "online_accuracy"),
            ("test", "test_accuracy"),
            ("tortoise test", "tortoise_test_accuracy"),
        )
        if f"{key}_per_task" in results
    }
    figures = {
        "continual_accuracy": plots.task_accuracies(
            series, f"{results['problem']} ({len(tasks)} tasks)"
        )
    }
    if "accuracy_matrix" in results:
        figures["accuracy_matrix"] = plots.accuracy_matrix(
            results["accuracy_matrix"], "Accuracy matrix"
        )
    for name, png in figures.items():
        path = os.path.join(context.output_dir, "plots", f"{name}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        context.writer.image(f"plots/{name}", png)
