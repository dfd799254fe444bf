"""`python -m zapkeras.train --gin_file=gin/permuted/base.gin` shrunk by
its macros: results.json["continual"] holds the per-task lists, and a
mistake in a continual setting exits 2 before any output is written."""

import json
import os

from tests.cli_utils import CONTINUAL_TINY
from tests.cli_utils import run_module

TINY = ["--gin_file=gin/permuted/base.gin", *CONTINUAL_TINY]


def test_permuted_base_runs_and_writes_results(tmp_path):
    out = str(tmp_path / "run")
    proc = run_module("zapkeras.train", *TINY, f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["experiment"] == "permuted/base"
    section = results["continual"]
    assert section["problem"] == "permuted" and section["tasks"] == 2
    assert len(section["online_accuracy_per_task"]) == 2
    assert len(section["test_accuracy_per_task"]) == 2
    assert section["global_steps"] == 2 * 2  # 60 images, batch 30
    assert "task 2/2" in proc.stdout
    with open(os.path.join(out, "config.gin")) as f:
        assert "permuted_tasks.tasks = %TASKS" in f.read()


def test_bad_continual_setting_exits_2(tmp_path):
    out = tmp_path / "run"
    proc = run_module(
        "zapkeras.train",
        *TINY,
        "--gin_param=continual_learning.restore_best = True",
        f"--output_dir={out}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "restore_best" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
