"""A run directory is reused, finished or not, only for the same run.

Before a grid runs anything, `check` compares the identity each run
directory recorded (`zapkeras.outputs.run_dir`: seed and parsed gin
bindings) with the one the grid gives that cell now (its gin files and
bindings parsed here), and exits 2 naming the cells and the settings that
differ, changing nothing. A pipeline has no --overwrite: delete a cell's
directory to rerun it with the new settings.
"""

import functools
import sys

import gin
from zapkeras import configs
from zapkeras.outputs import run_dir as run_dir_lib

MAX_CELLS = 3  # cells listed in the message


@functools.lru_cache(maxsize=None)
def _gin_ready():
    """Registers the configurables; includes resolve from the repository."""
    import zapkeras.gin_imports  # noqa: F401

    for path in configs.search_paths(()):
        gin.add_config_file_search_path(path)


def identity(run):
    """The identity `zapkeras.train` will record for `run` (its seed and
    its gin files and bindings parsed as the run parses them, from the
    repository), or None when they do not parse (the run says why)."""
    _gin_ready()
    gin.clear_config()
    try:
        with configs.quiet_include_misses():
            gin.parse_config_files_and_bindings(
                [configs.find(f) or f for f in run.gin_files],
                list(run.params),
                skip_unknown=False,
            )
        return run_dir_lib.identity(run.seed)
    except Exception:  # any parse error: the run itself reports it
        return None
    finally:
        gin.clear_config()


def check(runs, root):
    """Exits 2 when a run directory holds a run with other settings than
    the grid gives that cell now (see the module doc); reads only."""
    differ = []
    for run in runs:
        out = run.output_dir(root)
        if run_dir_lib.recorded(out) is None:
            continue
        current = identity(run)
        lines = [] if current is None else run_dir_lib.check(out, current)
        if lines:
            differ.append((run, out, lines))
    if not differ:
        return
    cells = [
        f"  {run.name} seed {run.seed} ({out}):\n"
        + run_dir_lib.summary(lines, indent="    ")
        for run, out, lines in differ[:MAX_CELLS]
    ]
    if len(differ) > MAX_CELLS:
        cells.append(f"  … and {len(differ) - MAX_CELLS} more")
    cells = "\n".join(cells)
    print(
        f"error: --output_dir={root!r}: {len(differ)} run(s) there hold "
        "other settings than this grid gives them (old → new):\n"
        f"{cells}\nRerun with the grid's previous flags (--scale, "
        "--gin_param, …), choose another --output_dir, or delete those "
        "runs' directories to run them with the new settings.",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(2)
