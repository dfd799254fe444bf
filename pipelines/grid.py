"""A resumable work queue of `python -m zapkeras.train` runs, and the
statistics every study's table uses.

Each run is one subprocess with its own output directory; a run whose
`results.json` exists is done and skipped, so rerunning a pipeline picks up
where an interrupted one stopped (a half-finished run resumes from its own
checkpoints). Failures do not stop the grid; they are listed at the end and
make the pipeline exit non-zero.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
from scipy import stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Run:
    """One `zapkeras.train` invocation of a study."""

    name: str  # the condition, e.g. 'asb_zap'
    gin_files: tuple
    seed: int
    params: tuple = ()  # gin bindings

    def output_dir(self, root):
        return os.path.join(root, self.name, f"seed_{self.seed}")


def results_path(run, root):
    return os.path.join(run.output_dir(root), "results.json")


def run_all(runs, root, data_dir=None, extra_args=()):
    """Runs every run not done yet; returns the runs that failed."""
    pending = [r for r in runs if not os.path.exists(results_path(r, root))]
    done = len(runs) - len(pending)
    failed, started = [], time.monotonic()
    for i, run in enumerate(pending):
        elapsed = time.monotonic() - started
        eta = elapsed / i * (len(pending) - i) if i else float("nan")
        _say(
            f"[{done + i}/{len(runs)} done, {len(failed)} failed, ETA "
            f"{eta / 60:.0f} min] {run.name} seed {run.seed}"
        )
        log = os.path.join(run.output_dir(root), "pipeline.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        command = [sys.executable, "-m", "zapkeras.train"]
        command += [f"--gin_file={f}" for f in run.gin_files]
        command += [f"--gin_param={p}" for p in run.params]
        command += [
            f"--seed={run.seed}",
            f"--output_dir={run.output_dir(root)}",
        ]
        if data_dir:
            command.append(f"--data_dir={data_dir}")
        with open(log, "w") as out:
            code = subprocess.call(
                [*command, *extra_args], cwd=REPO, stdout=out, stderr=out
            )
        if code:
            failed.append(run)
            _say(f"  failed (exit {code}); see {log}")
    _say(f"[{len(runs) - len(failed)}/{len(runs)} done, {len(failed)} failed]")
    return failed


def load(run, root):
    with open(results_path(run, root)) as f:
        return json.load(f)


def lookup(results, key):
    """results['a']['b'] for key 'a.b'; None when absent."""
    for part in key.split("."):
        if not isinstance(results, dict) or part not in results:
            return None
        results = results[part]
    return results


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def mann_whitney(a, b):
    """Two-sided Mann-Whitney U p-value of a vs b (None if too few)."""
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if len(a) < 2 or len(b) < 2:
        return None
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _say(message):
    print(message, flush=True)
