"""A resumable work queue of `python -m zapkeras.train` runs.

Each run is one subprocess with its own output directory; a run whose
`results.json` exists is done and skipped, so rerunning a pipeline picks up
where an interrupted one stopped (a half-finished run resumes from its own
checkpoints). While a queue runs a run it holds the run's lock file, so
several queues (`--jobs` workers, a second invocation, another machine on a
shared disk) can work on one grid without running anything twice; a lock
whose process died is taken over. When a run ends the queue records its
exit code and duration (progress.py reads these for the live view and the
ETA). Failures do not stop the grid: they are listed at the end, retried by
the next invocation, and make the pipeline exit non-zero. On a terminal
the queue shows a progress bar over the grid's runs (rate, ETA) with
failures above it; elsewhere a line per run started, with the ETA.

A run's directory is reused, finished or not, only for the same run: before
running anything the queue compares the identity each run directory
recorded (`zapkeras.outputs.run_dir`: seed and parsed gin bindings) with
the one the grid gives that cell now (its gin files and bindings parsed
here), and exits 2 naming the cells and the settings that differ, changing
nothing. A pipeline has no --overwrite: delete a cell's directory to rerun
it with the new settings.
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import gin
from pipelines import progress
from zapkeras import configs
from zapkeras.outputs import console
from zapkeras.outputs import files
from zapkeras.outputs import run_dir as run_dir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CELLS = 3  # cells listed in the message about reused directories


@dataclasses.dataclass(frozen=True)
class Run:
    """One `zapkeras.train` invocation of a study."""

    name: str  # the cell of the grid, e.g. 'asb_zap' or 'permuted/large/swr'
    gin_files: tuple
    seed: int
    params: tuple = ()  # gin bindings

    def output_dir(self, root):
        return os.path.join(root, self.name, f"seed_{self.seed}")


def results_path(run, root):
    return os.path.join(run.output_dir(root), "results.json")


def is_done(run, root):
    return os.path.exists(results_path(run, root))


def load(run, root):
    with open(results_path(run, root)) as f:
        return json.load(f)


def command(run, root, data_dir=None, extra_args=()):
    args = [sys.executable, "-m", "zapkeras.train"]
    args += [f"--gin_file={f}" for f in run.gin_files]
    args += [f"--gin_param={p}" for p in run.params]
    args += [f"--seed={run.seed}", f"--output_dir={run.output_dir(root)}"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    return [*args, *extra_args]


def _acquire(run_dir):
    """Creates the run's lock (taking over a dead queue's); False when a
    live queue holds it."""
    path = os.path.join(run_dir, progress.LOCK)
    info = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if progress.lock_owner_alive(progress.read_lock(run_dir)):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({**info, "started": time.time()}, f)
        return True
    return False


class _Children:
    """The runs' processes. Each runs in its own session, so a Ctrl-C
    reaches it only through `stop`, which passes the signal on to the
    runs in flight (they keep their last checkpoints and stay pending)
    and lets no new one start."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = set()
        self.stopped = False

    def start(self, args, out):
        """The started child, or None once stopped."""
        with self._lock:
            if self.stopped:
                return None
            child = subprocess.Popen(
                args,
                cwd=REPO,
                stdout=out,
                stderr=out,
                start_new_session=True,
                # pipeline.log gets lines, whatever the terminal shows
                env={**os.environ, console.MODE_VARIABLE: "lines"},
            )
            self._running.add(child)
            return child

    def wait(self, child):
        code = child.wait()
        with self._lock:
            self._running.discard(child)
        return code

    def stop(self, signum):
        with self._lock:
            self.stopped = True
            for child in self._running:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)


def _execute(run, root, args, children=None):
    """Runs one run under its lock; returns its exit code, or None when
    another queue holds it or has finished it, or the grid was stopped."""
    children = children or _Children()
    run_dir = run.output_dir(root)
    os.makedirs(run_dir, exist_ok=True)
    if not _acquire(run_dir):
        return None
    started = time.time()
    try:
        if is_done(run, root):
            return None
        log = os.path.join(run_dir, "pipeline.log")
        with open(log, "w") as out:
            child = children.start(args, out)
            if child is None:
                return None
            lock = os.path.join(run_dir, progress.LOCK)
            files.write_json(
                lock, {**progress.read_lock(run_dir), "child_pid": child.pid}
            )
            code = children.wait(child)
        if children.stopped:
            return None  # stopped, not failed: pending, from its checkpoint
        files.write_json(
            os.path.join(run_dir, progress.RECORD),
            {
                "exit_code": code,
                "started": started,
                "seconds": time.time() - started,
                "host": socket.gethostname(),
                "command": args,
            },
        )
        return code
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(run_dir, progress.LOCK))


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


def check_reuse(runs, root):
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


def run_all(runs, root, data_dir=None, extra_args=(), jobs=1):
    """Runs every run not done yet, `jobs` at a time; returns the runs that
    failed (runs another queue holds are neither run nor failed). Exits 2,
    running nothing, when a run's directory holds another run."""
    check_reuse(runs, root)
    jobs = max(jobs, 1)
    os.makedirs(root, exist_ok=True)
    progress.write_manifest(
        root, [(r.name, r.seed, r.output_dir(root)) for r in runs]
    )
    pending = [r for r in runs if not is_done(r, root)]
    failed, printing = [], threading.Lock()
    bar = console.Progress(
        os.path.basename(os.path.normpath(root)),
        len(runs),
        "run",
        start=len(runs) - len(pending),
    )

    def say_status(message=None, failure=False):
        """Off a terminal, the grid's state and `message` on one line; on
        one, the bar over runs, with a failure's line above it."""
        with printing:
            grid = progress.status(
                [(r.name, r.seed, r.output_dir(root)) for r in runs]
            )
            s = progress.summary(grid, workers=jobs)
            c = s["counts"]
            eta = s["eta_seconds"]
            eta = "?" if eta is None else f"{eta / 60:.0f} min"
            line = (
                f"[{c['done']}/{len(runs)} done, {c['running']} running, "
                f"{len(failed)} failed, ETA {eta}] {message}"
            )
            if message is None:
                bar.advance(c["done"])
            elif failure:
                console.say(line)
                bar.advance(c["done"])
            else:
                bar.update(c["done"], line=line)

    children = _Children()

    def work(run):
        if children.stopped:
            return
        say_status(f"{run.name} seed {run.seed}")
        args = command(run, root, data_dir, extra_args)
        code = _execute(run, root, args, children)
        if children.stopped:
            return
        if code is None:
            say_status(f"  {run.name} seed {run.seed}: another queue has it")
        elif code:
            with printing:
                failed.append(run)
            log = os.path.join(run.output_dir(root), "pipeline.log")
            say_status(f"  failed (exit {code}); see {log}", failure=True)
        else:
            say_status()

    pool = concurrent.futures.ThreadPoolExecutor(jobs)
    try:
        list(pool.map(work, pending))
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM: see _Children
        children.stop(getattr(e, "signum", signal.SIGINT))
        raise
    finally:  # after a stop: once the runs in flight have exited
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    done = sum(is_done(r, root) for r in runs)
    console.say(f"[{done}/{len(runs)} done, {len(failed)} failed]")
    return [r for r in runs if r in failed]
