"""The report writer: the same blocks in report.md and a self-contained
report.html, figures saved, embedded and logged to TensorBoard."""

import base64
import os
import warnings

import numpy as np

from pipelines import grid
from pipelines import progress
from pipelines import report
from tests.pipelines import report_checks
from zapkeras.outputs import files
from zapkeras.outputs import plots
from zapkeras.tuning import distributed


def test_markdown_and_html_hold_the_same_blocks(tmp_path):
    root = str(tmp_path)
    runs = np.array([[0.1, 0.2, np.nan], [0.3, np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN column is not an error
        png = plots.mean_std_lines(
            {"accuracy": {"a<b": runs}}, [1, 2, 3], "task", "t"
        )
    os.makedirs(os.path.join(root, "figures"))
    with open(os.path.join(root, "figures", "stale.png"), "wb") as f:
        f.write(png)  # from an earlier report of the grid: removed
    rep = report.Report(root, "Study & co")
    rep.heading("Results")
    rep.paragraph("p < 0.05 means <b>nothing</b> here")
    rep.table(["method", "acc"], [["base", "0.100 (n=1)"], ["x|y", 1]])
    rep.figure("curve", png, "A curve")
    markdown = rep.write()
    with open(os.path.join(root, "report.md")) as f:
        assert f.read() == markdown + "\n"
    assert markdown.startswith("# Study & co\n\n## Results\n\n")
    assert "| method | acc |\n|---|---|\n| base | 0.100 (n=1) |" in markdown
    assert "![A curve](figures/curve.png)" in markdown
    with open(os.path.join(root, "report.html")) as f:
        page = f.read()
    assert "<h1>Study &amp; co</h1>" in page
    assert "<p>p &lt; 0.05 means &lt;b&gt;nothing&lt;/b&gt; here</p>" in page
    assert "<tr><td>base</td><td>0.100 (n=1)</td></tr>" in page
    with open(os.path.join(root, "figures", "curve.png"), "rb") as f:
        assert f.read() == png
    assert base64.b64encode(png).decode("ascii") in page
    report_checks.assert_figures(root, ["curve"])


def test_grid_section_lists_the_runs_that_did_not_finish(tmp_path):
    root = str(tmp_path)
    runs = [grid.Run("a", ("x.gin",), s) for s in range(3)]
    keys = [progress.key(root, r.output_dir(root)) for r in runs]
    oracle = distributed.leased(grid.RunsOracle)(keys)
    oracle._set_project_dir(root, "keras_tuner/grid_test")
    entries = [(r.name, r.seed, r.output_dir(root)) for r in runs]
    progress.write_manifest(root, entries, "keras_tuner/grid_test")
    for code in (0, 3):
        trial = oracle.create_trial("job.0")
        oracle.update_trial(trial.trial_id, {"seconds": 1.0, "exit_code": code})
        trial.status = "FAILED" if code else "COMPLETED"
        oracle.end_trial(trial)
    files.write_json(os.path.join(runs[0].output_dir(root), "results.json"), {})
    rep = report.Report(root, "t")
    report.grid_section(rep, runs, root, "ci")
    rep.write()
    tables = report_checks.md_tables(os.path.join(root, "report.md"))
    assert tables == [
        (
            ["run", "seed", "state", "exit code"],
            [["a", "1", "failed", "3"], ["a", "2", "pending", ""]],
        )
    ]
    with open(os.path.join(root, "report.md")) as f:
        assert "3 runs, 1 done, 1 failed, 0 running, 1 not run" in f.read()
