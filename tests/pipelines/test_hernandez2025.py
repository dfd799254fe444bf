"""`python -m pipelines.hernandez2025` at a test scale: the setting's
bindings reach the runs, the report's table is the runs' results.json
values with Mann-Whitney U against base, and the figures are there."""

import json
import os

import numpy as np
import pytest

from pipelines import stats
from tests.cli_utils import run_module
from tests.pipelines import report_checks


@pytest.mark.slow
def test_hernandez2025_report_matches_the_runs(tmp_path):
    root = str(tmp_path / "hernandez")
    proc = run_module(
        "pipelines.hernandez2025",
        f"--output_dir={root}",
        "--scale=ci",
        "--problems=permuted",
        "--methods=base,swr",
        "--widths=small",
        "--layer_norms=none",
        "--seeds=2",
        "--jobs=2",
        "--gin_param=TASKS = 3",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cell = os.path.join(root, "permuted", "small-none")
    with open(os.path.join(cell, "swr", "seed_0", "config.gin")) as f:
        config = f.read()
    for binding in (
        "WIDTH = 10",
        "LAYER_NORM = None",
        "continual_learning.learning_rate = 0.05",
        "SelectiveWeightReinit.factor = 1e-06",  # tuned for h = 10
        "TASKS = 3",
    ):
        assert binding in config, binding
    values = {}
    for method in ("base", "swr"):
        runs = []
        for seed in (0, 1):
            path = os.path.join(cell, method, f"seed_{seed}", "results.json")
            with open(path) as f:
                runs.append(json.load(f)["continual"])
        assert all(len(r["online_accuracy_per_task"]) == 3 for r in runs)
        values[method] = {
            "final online acc": [r["online_accuracy"] for r in runs],
            "mean online acc": [
                np.mean(r["online_accuracy_per_task"]) for r in runs
            ],
            "final test acc": [r["test_accuracy"] for r in runs],
        }
    (table,) = report_checks.md_tables(os.path.join(root, "report.md"))
    rows = report_checks.rows_by(table, "setting", "method")
    for method, metrics in values.items():
        row = rows[("small-none", method)]
        for label, v in metrics.items():
            assert row[label] == report_checks.mean_std(v), (method, label)
    assert rows[("small-none", "base")]["p final test acc vs base"] == "–"
    for label in ("final online acc", "final test acc"):  # 2 seeds a side
        cell_p = rows[("small-none", "swr")][f"p {label} vs base"]
        assert cell_p == "– (n too small: min p = 0.33)"
    with open(os.path.join(root, "report.md")) as f:
        assert f.read().count(stats.P_NOTE) == 1
    report_checks.assert_figures(
        root,
        [
            "permuted_small-none_per_task",
            "permuted_small-none_learning_curve",
            "permuted_small-none_correlates",
        ],
    )
