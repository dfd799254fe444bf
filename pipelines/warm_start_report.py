"""The warm-start studies' report: per grid point and method the test
accuracy of the network the method predicts with, the fresh network's, the
gap between them, Mann-Whitney p-values, and the figures
(pipelines/warm_start.py runs the grid)."""

import os

from pipelines import continual_figures
from pipelines import grid
from pipelines import report
from pipelines import stats
from zapkeras.outputs import files
from zapkeras.outputs import plots


def prediction_accuracy(results):
    """Test accuracy of the network the method predicts with."""
    c = results["continual"]
    return c.get("tortoise_test_accuracy", c["test_accuracy"])


def _grouped(all_runs):
    """{point: {method: [Run]}} in grid order."""
    out = {}
    for run in all_runs:
        point, method = run.name.split("/")
        out.setdefault(point, {}).setdefault(method, []).append(run)
    return out


def collect(all_runs, root):
    """{point: {method: {metric: [value per run]}}}; fresh and gap use the
    base run of the same point and seed."""
    values = {}
    for point, methods in _grouped(all_runs).items():
        fresh = {
            r.seed: stats.lookup(
                grid.load(r, root), "continual.fresh_test_accuracy"
            )
            for r in methods.get("base", [])
            if grid.is_done(r, root)
        }

        def gap(results, fresh=fresh):
            f = fresh.get(results["seed"])
            return None if f is None else f - prediction_accuracy(results)

        values[point] = stats.collect(
            methods,
            root,
            {
                "test acc": prediction_accuracy,
                "fresh test acc": lambda r, fresh=fresh: fresh.get(r["seed"]),
                "gap (fresh − test)": gap,
            },
        )
    return values


HEADER = [
    "grid point",
    "method",
    "test acc",
    "fresh test acc",
    "gap (fresh − test)",
    "p test vs base",
    "p test vs fresh",
]


def table_rows(values):
    rows = []
    for point, methods in values.items():
        base = methods.get("base")
        for method, v in methods.items():
            vs_base = "–"
            if base is not None and method != "base":
                vs_base = stats.mann_whitney(v["test acc"], base["test acc"])
            vs_fresh = stats.mann_whitney(v["test acc"], v["fresh test acc"])
            rows.append(
                [point, method]
                + [stats.mean_std(v[k]) for k in HEADER[2:5]]
                + [vs_base, vs_fresh]
            )
    return rows


def _figures(rep, study, values, all_runs, root):
    categories = list(values)
    methods = list(dict.fromkeys(m for v in values.values() for m in v))
    column = {
        m: [values[p].get(m, {}).get("test acc", []) for p in categories]
        for m in methods
    }
    column["fresh"] = [
        values[p].get("base", {}).get("fresh test acc", []) for p in categories
    ]
    rep.figure(
        "test_accuracy",
        plots.grouped_bars(categories, column, "test accuracy", study),
        "Final test accuracy per grid point, mean ± std over seeds; fresh: "
        "the network trained from its initial weights on the final data.",
    )
    gaps = {
        m: [
            values[p].get(m, {}).get("gap (fresh − test)", [])
            for p in categories
        ]
        for m in methods
    }
    rep.figure(
        "generalization_gap",
        plots.grouped_bars(
            categories, gaps, "fresh − warm test accuracy", study
        ),
        "Generalisation gap (fresh − warm-started test accuracy) per grid "
        "point, mean ± std over seeds.",
    )
    if study == "berariu2021":
        _gap_by_stages(rep, values)
    for point, cells in _grouped(all_runs).items():
        continual_figures.task_panels(
            rep,
            f"{point}_per_phase",
            f"{study} {point}",
            cells,
            root,
            {
                "test_accuracy_per_task": "test accuracy",
                "tortoise_test_accuracy_per_task": "tortoise test accuracy",
                "online_accuracy_per_task": "online accuracy",
            },
            xlabel="phase",
        )
        continual_figures.learning_curves(
            rep, f"{point}_learning_curve", f"{study} {point}", cells, root
        )


def _gap_by_stages(rep, values):
    """berariu2021 Fig. 4: the gap against the number of stages, a line
    per share of uniform data (when several stage counts were run)."""
    by_uniform = {}
    for point, methods in values.items():
        if point.startswith("stages_") and "base" in methods:
            stages, uniform = point.split("-")
            by_uniform.setdefault(uniform.replace("_", " "), {})[
                int(stages.split("_")[1])
            ] = methods["base"]["gap (fresh − test)"]
    x = sorted({k for v in by_uniform.values() for k in v})
    if len(x) < 2:
        return
    series = {
        name: stats.stack([gaps.get(k, []) for k in x]).T
        for name, gaps in by_uniform.items()
    }
    rep.figure(
        "gap_by_stages",
        plots.mean_std_lines(
            {"fresh − warm test accuracy": series},
            x,
            "stages",
            "berariu2021: generalisation gap vs stages",
        ),
        "Generalisation gap after the last stage against the number of "
        "stages (berariu2021 Fig. 4), mean ± std over seeds.",
    )


def write_report(all_runs, root, study, scale):
    """table.md, summary.json and report.md/html of the grid under root."""
    values = collect(all_runs, root)
    rows = table_rows(values)
    text = report.markdown_table(HEADER, rows)
    print("\n" + text)
    files.write_atomic(os.path.join(root, "table.md"), text + "\n")
    files.write_json(
        os.path.join(root, "summary.json"),
        {"study": study, "scale": scale, "values": values},
    )
    rep = report.Report(root, f"{study}: warm-starting and the gap")
    report.grid_section(rep, all_runs, root, scale)
    rep.heading("Warm-started vs fresh")
    rep.paragraph(
        "Mean ± std over the seeds that finished (n=runs). test acc: the "
        "network the method predicts with (the tortoise for hare_tortoise); "
        "fresh: the base run's network trained from the same initial weights "
        "on the final data only; gap = fresh − test, per seed; p: two-sided "
        "Mann-Whitney U. " + stats.P_NOTE
    )
    rep.table(HEADER, rows)
    rep.heading("Figures")
    _figures(rep, study, values, all_runs, root)
    rep.write()
