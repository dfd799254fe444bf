"""The flags every study pipeline shares, and its main: run the grid (or
show its progress), then write the report.

Every pipeline takes --data_dir, --output_dir (default runs/<study>),
--scale=ci|small|paper, --seeds, --gin_param (extra bindings for every run,
applied after the study's), --jobs (runs at a time on this machine),
--worker_timeout (across machines: how long a silent worker keeps its
runs), --status (print the grid's progress and exit) and --report_only
(write the report from the runs that finished, running nothing). With
keras-tuner's KERASTUNER_* variables set (README "Grids across
machines"), the chief serves the grid and writes the report; a worker
runs its share and writes none. Each pipeline adopts these flags
(`flags.adopt_module_key_flags(cli)`) so that its --help lists them with
its own, and runs with `cli.run(main, study)`: SIGINT or SIGTERM stops the
runs in flight (each keeps its last checkpoint) and ends the pipeline with
one line and exit status 130 / 143; rerunning the command resumes.
"""

import os
import sys

from absl import flags

from pipelines import grid
from pipelines import progress
from zapkeras import command
from zapkeras.errors import UsageError
from zapkeras.tuning import distributed

SCALES = ("ci", "small", "paper")

# data_dir, output_dir and gin_param are zapkeras.cli's names too: either
# definition may override the other in a process that imports both.
_SHARED = dict(allow_override=True)
flags.DEFINE_string("data_dir", None, "--data_dir of every run.", **_SHARED)
flags.DEFINE_string(
    "output_dir", None, "Where the grid goes (runs/<study>).", **_SHARED
)
flags.DEFINE_enum("scale", "ci", list(SCALES), "Size of every run.")
flags.DEFINE_integer(
    "seeds", None, "Seeds per cell, 0..seeds-1 (default: the scale's)."
)
flags.DEFINE_multi_string(
    "gin_param", [], "Extra bindings for every run.", **_SHARED
)
flags.DEFINE_integer(
    "jobs", 1, "Runs at a time on this machine.", lower_bound=1
)
flags.DEFINE_integer(
    "worker_timeout",
    distributed.LEASE_SECONDS,
    "Across machines: seconds a worker may fall silent before the chief "
    "gives its runs to another.",
    lower_bound=4,
    **_SHARED,
)
flags.DEFINE_bool("status", False, "Print the grid's progress and exit.")
flags.DEFINE_bool(
    "report_only", False, "Write the report from finished runs; run none."
)
FLAGS = flags.FLAGS


def usage_error(study, message):
    """Exits 2 with `message` (it names the flag and the fix)."""
    print(f"{study}: error: {message}", file=sys.stderr)
    sys.exit(2)


def choices(study, flag, given, allowed):
    """`given` (a list flag's values), checked against `allowed`."""
    unknown = [g for g in given if g not in allowed]
    if unknown or not given:
        usage_error(
            study,
            f"--{flag} has {unknown or 'nothing'}; choose from "
            f"{', '.join(allowed)}.",
        )
    return list(given)


def run(main, study):
    """`app.run(main)` with the short --help and the one-line stop."""
    command.run(main, study)


def root(study):
    return FLAGS.output_dir or os.path.join("runs", study)


def run_study(study, runs, write_report):
    """--status, or the grid's runs then `write_report(runs, root)` (not
    on a worker); exits 1 when a run failed."""
    out = root(study)
    if FLAGS.status:
        entries = [(r.name, r.seed, r.output_dir(out)) for r in runs]
        print(progress.render(out, progress.status(out, entries)))
        return
    failed = []
    try:
        role = distributed.role()
    except UsageError as e:
        usage_error(study, str(e))
    with command.on_stop(
        lambda: f"{out} keeps the finished runs and the stopped ones' last "
        "checkpoints; run the same command again to resume"
    ):
        if not FLAGS.report_only:
            try:
                failed = grid.run_all(
                    runs,
                    out,
                    FLAGS.data_dir,
                    jobs=FLAGS.jobs,
                    lease_seconds=FLAGS.worker_timeout,
                )
            except UsageError as e:
                usage_error(study, str(e))
        if role != "worker":
            write_report(runs, out)
    if failed:
        sys.exit(1)
