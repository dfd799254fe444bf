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
the next invocation, and make the pipeline exit non-zero.
"""

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time

from pipelines import progress
from zapkeras.outputs import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _execute(run, root, args):
    """Runs one run under its lock; returns its exit code, or None when
    another queue holds it or has finished it."""
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
            child = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=out)
            lock = os.path.join(run_dir, progress.LOCK)
            files.write_json(
                lock, {**progress.read_lock(run_dir), "child_pid": child.pid}
            )
            code = child.wait()
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


def run_all(runs, root, data_dir=None, extra_args=(), jobs=1):
    """Runs every run not done yet, `jobs` at a time; returns the runs that
    failed (runs another queue holds are neither run nor failed)."""
    jobs = max(jobs, 1)
    os.makedirs(root, exist_ok=True)
    progress.write_manifest(
        root, [(r.name, r.seed, r.output_dir(root)) for r in runs]
    )
    pending = [r for r in runs if not is_done(r, root)]
    failed, printing = [], threading.Lock()

    def say_status(message):
        with printing:
            grid = progress.status(
                [(r.name, r.seed, r.output_dir(root)) for r in runs]
            )
            s = progress.summary(grid, workers=jobs)
            c = s["counts"]
            eta = s["eta_seconds"]
            eta = "?" if eta is None else f"{eta / 60:.0f} min"
            _say(
                f"[{c['done']}/{len(runs)} done, {c['running']} running, "
                f"{len(failed)} failed, ETA {eta}] {message}"
            )

    def work(run):
        say_status(f"{run.name} seed {run.seed}")
        code = _execute(run, root, command(run, root, data_dir, extra_args))
        if code is None:
            say_status(f"  {run.name} seed {run.seed}: another queue has it")
        elif code:
            with printing:
                failed.append(run)
            log = os.path.join(run.output_dir(root), "pipeline.log")
            say_status(f"  failed (exit {code}); see {log}")

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(work, pending))
    done = sum(is_done(r, root) for r in runs)
    _say(f"[{done}/{len(runs)} done, {len(failed)} failed]")
    return [r for r in runs if r in failed]


def _say(message):
    print(message, flush=True)
