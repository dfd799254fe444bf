"""`python -m pipelines.warm_start` at a test scale: lee2024 (base and
Hare & Tortoise: the tortoise's accuracy, the base run's fresh network,
the gap per seed) and berariu2021 (the gap against the number of
stages), each report checked against the runs' results.json."""

import json
import os

import pytest

from pipelines import stats
from pipelines import warm_start_report
from tests.cli_utils import run_module
from tests.pipelines import report_checks


def _continual(root, cell, seed):
    path = os.path.join(root, cell, f"seed_{seed}", "results.json")
    with open(path) as f:
        results = json.load(f)
    assert results["seed"] == seed
    return results["continual"]


def _table(root):
    (table,) = report_checks.md_tables(os.path.join(root, "report.md"))
    return report_checks.rows_by(table, "grid point", "method")


@pytest.mark.slow
def test_lee2024_report_matches_the_runs(tmp_path):
    root = str(tmp_path / "lee")
    proc = run_module(
        "pipelines.warm_start",
        "--study=lee2024",
        f"--output_dir={root}",
        "--methods=hare_tortoise",  # base is always run
        "--seeds=2",
        "--jobs=2",
        "--gin_param=warm_start_tasks.scale_epochs = False",  # 1 epoch each
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    point = "ratio_0.1-noise_0.5"
    base = [_continual(root, f"{point}/base", s) for s in (0, 1)]
    ht = [_continual(root, f"{point}/hare_tortoise", s) for s in (0, 1)]
    assert all(r["label_noise_ratios"] == [0.5, 0.0] for r in base + ht)
    assert all(r["data_ratios"] == [0.1, 0.9] for r in base + ht)
    assert all(r["epochs_per_phase"] == [1, 1] for r in base + ht)
    assert all("fresh_test_accuracy" not in r for r in ht)  # base's is used
    fresh = [r["fresh_test_accuracy"] for r in base]
    accuracy = {
        "base": [r["test_accuracy"] for r in base],
        "hare_tortoise": [r["tortoise_test_accuracy"] for r in ht],
    }
    rows = _table(root)
    for method, acc in accuracy.items():
        row = rows[(point, method)]
        assert row["test acc"] == report_checks.mean_std(acc)
        assert row["fresh test acc"] == report_checks.mean_std(fresh)
        gap = [f - a for f, a in zip(fresh, acc)]
        assert row["gap (fresh − test)"] == report_checks.mean_std(gap)
        assert row["p test vs fresh"] == "– (n too small: min p = 0.33)"
    assert rows[(point, "hare_tortoise")]["p test vs base"] == (
        "– (n too small: min p = 0.33)"
    )
    report_checks.assert_figures(
        root,
        [
            "test_accuracy",
            "generalization_gap",
            f"{point}_per_phase",
            f"{point}_learning_curve",
        ],
    )


@pytest.mark.slow
def test_berariu2021_report_matches_the_runs(tmp_path):
    root = str(tmp_path / "berariu")
    proc = run_module(
        "pipelines.warm_start",
        "--study=berariu2021",
        f"--output_dir={root}",
        "--stages=2,3",
        "--seeds=1",
        "--jobs=2",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _table(root)
    for stages in (2, 3):
        point = f"stages_{stages}-uniform_1"
        run = _continual(root, f"{point}/base", 0)
        assert run["problem"] == "multi_stage" and run["tasks"] == stages
        row = rows[(point, "base")]
        assert row["test acc"] == report_checks.mean_std([run["test_accuracy"]])
        assert row["gap (fresh − test)"] == report_checks.mean_std(
            [run["generalization_gap"]]
        )
    report_checks.assert_figures(
        root,
        [
            "test_accuracy",
            "generalization_gap",
            "gap_by_stages",
            "stages_2-uniform_1_per_phase",
            "stages_2-uniform_1_learning_curve",
            "stages_3-uniform_1_per_phase",
            "stages_3-uniform_1_learning_curve",
        ],
    )


def test_table_shows_n_single_runs_and_p_where_reachable(tmp_path, monkeypatch):
    """Four seeds a side can reach p < 0.05, one seed cannot."""
    values = {
        "ratio_0.1-noise_0.5": {
            "base": {
                "test acc": [0.5, 0.52, 0.54, 0.56],
                "fresh test acc": [0.6, 0.62, 0.64, 0.66],
                "gap (fresh − test)": [0.1, 0.1, 0.1, 0.1],
            },
            "head_reset": {
                "test acc": [0.55, None, None, None],
                "fresh test acc": [0.65, None, None, None],
                "gap (fresh − test)": [0.1, None, None, None],
            },
        }
    }
    rows = {row[1]: row for row in warm_start_report.table_rows(values)}
    assert warm_start_report.HEADER[2] == "test acc"
    assert rows["base"][2:] == [
        "0.530 ± 0.022 (n=4)",
        "0.630 ± 0.022 (n=4)",
        "0.100 ± 0.000 (n=4)",
        "–",
        "0.0286",
    ]
    assert rows["head_reset"][2:] == [
        "0.550 (n=1)",
        "0.650 (n=1)",
        "0.100 (n=1)",
        "– (n too small: min p = 0.4)",
        "– (n too small: min p = 1)",
    ]
    root = str(tmp_path)
    monkeypatch.setattr(warm_start_report, "collect", lambda runs, root: values)
    monkeypatch.setattr(warm_start_report, "_figures", lambda *args: None)
    warm_start_report.write_report([], root, "lee2024", "ci")
    with open(os.path.join(root, "report.md")) as f:
        assert f.read().count(stats.P_NOTE) == 1
