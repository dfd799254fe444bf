"""`python -m pipelines.frati2024` on the embedded glyphs at a test scale:
the report's tables are the runs' results.json values, and every figure
(transfer curves, task losses, zap-divergence) is there."""

import json
import os
import types

import pytest

from pipelines import frati2024
from pipelines import grid
from pipelines import stats
from tests.cli_utils import Loopback
from tests.cli_utils import run_module
from tests.pipelines import report_checks
from zapkeras.outputs import files

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
KEYS_LIST = list(KEYS)


def _value(results, path):
    for key in path:
        results = results[key]
    return results


GRID = ["--scale=ci", "--seeds=2", "--conditions=iid,iid_zap", *TINY]


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory):
    """The grid run with --jobs=2 (and --analyses); its root."""
    root = str(tmp_path_factory.mktemp("frati") / "jobs2")
    proc = run_module(
        "pipelines.frati2024",
        f"--output_dir={root}",
        "--analyses",
        "--jobs=2",
        *GRID,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


def _summary(root):
    with open(os.path.join(root, "summary.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_one_job_two_jobs_and_a_chief_with_two_workers_agree(
    two_jobs, tmp_path
):
    """The same grid through the oracle on one machine, one or two runs
    at a time, and across a chief and two workers (loopback, one ROOT):
    the same summary.json values."""
    one = str(tmp_path / "jobs1")
    args = [*GRID, "--analyses"]
    proc = run_module("pipelines.frati2024", f"--output_dir={one}", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shared = str(tmp_path / "cluster")
    cluster = Loopback(
        "pipelines.frati2024", [f"--output_dir={shared}", *args], str(tmp_path)
    )
    try:
        for name in ("chief", "w0", "w1"):
            cluster.start(name)
        workers = [cluster.wait(name) for name in ("w0", "w1")]
        chief = cluster.wait("chief")
    finally:
        cluster.kill_all()
    assert _summary(one) == _summary(two_jobs) == _summary(shared)
    assert all("seed" in text for text in workers)  # both ran runs
    assert "[4/4 done, 0 failed]" in chief


@pytest.mark.slow
def test_frati2024_report_matches_the_runs(two_jobs):
    root = two_jobs
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
        for label in KEYS:  # 2 seeds a side: min p = 2 / C(4, 2)
            assert p_row[label] == "– (n too small: min p = 0.33)"
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


def _fake_run(root, run, accuracy, best_lr):
    """results.json and transfer curves of a finished run, swept over
    0.0003, 0.001 and 0.003."""
    transfer = {
        "test_accuracy": accuracy,
        "best_lr": best_lr,
        "by_lr": {lr: {} for lr in ("0.003", "0.001", "0.0003")},
    }
    files.write_json(
        grid.results_path(run, root),
        {
            "seed": run.seed,
            "pretrain": {"val_accuracy": accuracy},
            "transfer": {"sequential": transfer, "iid": transfer},
        },
    )
    for protocol, x_key in (("sequential", "classes_seen"), ("iid", "step")):
        curve = [{x_key: x, "test_accuracy_seen": accuracy} for x in (1, 2)]
        files.write_json(
            os.path.join(
                run.output_dir(root), "curves", f"transfer_{protocol}.json"
            ),
            {f"{best_lr:g}": [{"curve": curve}]},
        )


def test_frati2024_report_shows_n_p_notes_and_edge_rates(tmp_path, monkeypatch):
    root = str(tmp_path)
    monkeypatch.setattr(frati2024, "FLAGS", types.SimpleNamespace(scale="ci"))
    all_runs = frati2024.runs(("iid", "iid_zap", "asb", "asb_zap"), 3, "ci")
    accuracy = {"iid": 0.5, "iid_zap": 0.6, "asb": 0.4, "asb_zap": 0.45}
    for run in all_runs:
        if run.name.startswith("iid") or run.seed == 0:
            best = 0.003 if run.name == "iid" else 0.001
            _fake_run(root, run, accuracy[run.name] + 0.1 * run.seed, best)
    frati2024.write_report(all_runs, root)
    _, table, tests = report_checks.md_tables(os.path.join(root, "report.md"))
    rows = report_checks.rows_by(table, "condition")
    for label in KEYS:
        assert rows[("iid",)][label] == "0.600 ± 0.082 (n=3)"
        assert rows[("asb",)][label] == "0.400 (n=1)"
    p_rows = report_checks.rows_by(tests, "pair")
    assert p_rows[("iid_zap vs iid",)][KEYS_LIST[0]] == (
        "– (n too small: min p = 0.1)"
    )
    assert p_rows[("asb_zap vs asb",)][KEYS_LIST[0]] == (
        "– (n too small: min p = 1)"
    )
    warning = (
        "Warning: sequential transfer, condition iid: the best learning "
        "rate 0.003 is the largest swept (0.0003–0.003) in seed(s) 0, 1, 2;"
    )
    with open(os.path.join(root, "report.md")) as f:
        markdown = f.read()
    assert markdown.count(stats.P_NOTE) == 1
    under_table = markdown.split("| asb_zap | 0.450")[1].split("\n\n")[1]
    assert under_table.startswith(warning)
    assert markdown.count("Warning:") == 2  # iid's sequential and i.i.d.
    with open(os.path.join(root, "table.md")) as f:
        assert warning in f.read()
    report_checks.assert_figures(root, ["transfer_sequential", "transfer_iid"])
