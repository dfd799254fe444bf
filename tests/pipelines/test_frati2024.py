"""`python -m pipelines.frati2024` on the embedded glyphs at a test scale:
the report's tables are the runs' results.json values, and every figure
(transfer curves, task losses, zap-divergence) is there."""

import json
import os

import pytest
from scipy import stats

from tests.cli_utils import run_module
from tests.pipelines import report_checks

TINY = [
    "--gin_param=load_class_sets.name = 'embedded'",
    "--gin_param=glyph_class_sets.background_classes = 10",
    "--gin_param=glyph_class_sets.evaluation_classes = 4",
    "--gin_param=TransferRunner.head_outputs = None",
    "--gin_param=WIDTH = 4",
    "--gin_param=PRETRAIN_EPOCHS = 2",
    "--gin_param=iid_pretraining.batch_size = 32",
    "--gin_param=TRANSFER_CLASSES = 3",
    "--gin_param=TRANSFER_RUNS = 1",
    "--gin_param=TRANSFER_LRS = (0.001,)",
    "--gin_param=sequential_transfer.eval_every = 3",
    "--gin_param=zap_divergence.steps = 3",
    "--gin_param=zap_divergence.batch_size = 16",
]
KEYS = {
    "pretrain val acc": ("pretrain", "val_accuracy"),
    "sequential transfer test acc": ("transfer", "sequential", "test_accuracy"),
    "i.i.d. transfer test acc": ("transfer", "iid", "test_accuracy"),
}


def _value(results, path):
    for key in path:
        results = results[key]
    return results


@pytest.mark.slow
def test_frati2024_report_matches_the_runs(tmp_path):
    root = str(tmp_path / "frati")
    proc = run_module(
        "pipelines.frati2024",
        f"--output_dir={root}",
        "--scale=ci",
        "--seeds=2",
        "--conditions=iid,iid_zap",
        "--analyses",
        "--jobs=2",
        *TINY,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    values = {}
    for condition in ("iid", "iid_zap"):
        results = []
        for seed in (0, 1):
            path = os.path.join(root, condition, f"seed_{seed}", "results.json")
            with open(path) as f:
                results.append(json.load(f))
        assert [r["seed"] for r in results] == [0, 1]
        values[condition] = {
            label: [_value(r, path) for r in results]
            for label, path in KEYS.items()
        }
    # The report and table.md hold the same two tables.
    for name in ("report.md", "table.md"):
        table, tests = report_checks.md_tables(os.path.join(root, name))
        rows = report_checks.rows_by(table, "condition")
        for condition, metrics in values.items():
            for label, v in metrics.items():
                cell = rows[(condition,)][label]
                assert cell == report_checks.mean_std(v), (name, label)
        p_row = report_checks.rows_by(tests, "pair")[("iid_zap vs iid",)]
        for label in KEYS:
            p = stats.mannwhitneyu(
                values["iid_zap"][label],
                values["iid"][label],
                alternative="two-sided",
            ).pvalue
            assert p_row[label] == report_checks.p_text(p)
    with open(os.path.join(root, "summary.json")) as f:
        assert json.load(f) == {"scale": "ci", "values": values}
    report_checks.assert_figures(
        root,
        [
            "transfer_sequential",
            "transfer_iid",
            "task_losses_iid",
            "task_losses_iid_zap",
            "zap_divergence_iid_lr_0.001",
            "zap_divergence_iid_zap_lr_0.001",
        ],
    )
