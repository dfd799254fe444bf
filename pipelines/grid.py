"""A study's grid of `python -m zapkeras.train` runs, run through
keras-tuner's oracle machinery (zapkeras.tuning.distributed).

Each run (a cell and a seed) is a trial of one oracle over the grid's runs,
and one subprocess with its own output directory. `--jobs N` runs N trials
at a time (N tuners asking one oracle). With keras-tuner's KERASTUNER_*
variables the same command is the chief, which serves the grid to the
workers and then writes the report, or a worker, which runs N trials at a
time of the chief's grid until none is left; every machine must see ROOT
(the report reads each run's results.json). A worker that dies has its
runs given to another when their leases lapse (--worker_timeout).

A run whose results.json exists is done: it is ended at once, not run, so
rerunning a pipeline picks up where an interrupted one stopped (a
half-finished run resumes from its own checkpoints). The oracle's state
is in ROOT/keras_tuner/grid_<digest of the runs>/: a rerun of the same
grid reloads it and runs again what failed; ROOT/grid.json names it for
the live view (progress.py). Failures do not stop the grid: they are
listed at the end and make the pipeline exit non-zero. On a terminal the
grid shows a progress bar over its runs (rate, ETA) with failures above
it; elsewhere a line per run started, with the ETA.

A run's directory is reused, finished or not, only for the same run
(reuse.py checks it before anything runs).
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import keras_tuner
from keras_tuner.engine import base_tuner
from keras_tuner.engine import trial as trial_lib
from keras_tuner.errors import FailedTrialError
from keras_tuner.errors import FatalError

from pipelines import progress
from pipelines import reuse
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.tuning import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = "keras_tuner"
COMPLETED = trial_lib.TrialStatus.COMPLETED
FAILED = trial_lib.TrialStatus.FAILED


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


class RunsOracle(keras_tuner.Oracle):
    """The grid's runs, in order, as the values of one hyperparameter
    'run' (a run's directory under ROOT); a trial's objective is the
    seconds its run took (progress.py's ETA), its exit code a metric."""

    def __init__(self, keys, **kwargs):
        space = keras_tuner.HyperParameters()
        space.Choice("run", list(keys))
        super().__init__(
            objective=keras_tuner.Objective("seconds", "min"),
            max_trials=len(keys),
            hyperparameters=space,
            allow_new_entries=False,
            max_retries_per_trial=0,  # a dead worker's run: its lease
            max_consecutive_failed_trials=sys.maxsize,  # failures go on
            **kwargs,
        )
        self.keys = list(keys)
        self.verbose = 0  # the grid prints its own lines

    def populate_space(self, trial_id):
        given = {t.hyperparameters.values["run"] for t in self.trials.values()}
        for key in self.keys:
            if key not in given:
                return {"status": "RUNNING", "values": {"run": key}}
        return {"status": "STOPPED"}

    @keras_tuner.synchronized
    def reopen(self, done):
        """Sends back to the queue the runs of a reloaded grid that failed
        or whose results.json is gone (`done(key)` is False)."""
        for trial_id in list(self.end_order):
            trial = self.trials[trial_id]
            if trial.status == FAILED or not done(
                trial.hyperparameters.values["run"]
            ):
                self.end_order.remove(trial_id)
                self._retry_queue.append(trial_id)
        self.save()


class _Children:
    """The runs' processes. Each runs in its own session, so a Ctrl-C
    reaches it only through `stop`, which passes the signal on to the
    runs in flight (they keep their last checkpoints and stay pending)
    and lets no new one start; each dies with its tuner's thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = set()
        self.stopped = False

    def start(self, args, out):
        """The started child, or None once stopped."""
        env = {**os.environ, console.MODE_VARIABLE: "lines"}
        for name in distributed.VARIABLES:  # the run is no tuner
            env.pop(name, None)
        with self._lock:
            if self.stopped:
                return None
            child = subprocess.Popen(
                args,
                cwd=REPO,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env=env,  # pipeline.log gets lines, whatever the terminal
                preexec_fn=distributed.die_with_parent,
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


class RunsTuner(distributed.WorkerSearch, base_tuner.BaseTuner):
    """Runs the trials of a RunsOracle as `zapkeras.train` processes, the
    run's output in its directory's pipeline.log; `report` is a pair of
    callables, (run) as a run starts and (run, exit code) as it ends (code
    None: done before, not run)."""

    def __init__(self, oracle, grid, tuner_id, report, lease_seconds):
        self.grid, (self.on_start, self.on_end) = grid, report
        self.lease_seconds = lease_seconds
        super().__init__(oracle, directory=grid.root, project_name=grid.project)
        self.tuner_id = tuner_id

    def save(self):
        """Nothing: the oracle saves itself as trials start and end, and
        this tuner has no state of its own."""

    def run_trial(self, trial, *args, **kwargs):
        run = self.grid.runs[trial.hyperparameters.values["run"]]
        if is_done(run, self.grid.root):
            self.on_end(run, None)
            return {"seconds": 0.0, "exit_code": 0.0}
        run_dir = run.output_dir(self.grid.root)
        os.makedirs(run_dir, exist_ok=True)
        self.on_start(run)
        started = time.time()
        with distributed.lease(self.oracle, trial.trial_id, self.lease_seconds):
            with open(os.path.join(run_dir, "pipeline.log"), "w") as out:
                child = self.grid.children.start(self.grid.command(run), out)
                code = None if child is None else self.grid.children.wait(child)
        if self.grid.children.stopped:  # pending, from its checkpoint
            raise FatalError("stopped")
        metrics = {"seconds": time.time() - started, "exit_code": float(code)}
        self.on_end(run, code)
        if code:
            self.oracle.update_trial(trial.trial_id, metrics)
            raise FailedTrialError(f"exit {code}")
        return metrics


@dataclasses.dataclass
class _Grid:
    """What the tuners of one grid share."""

    runs: dict  # key → Run, in grid order
    root: str
    data_dir: str
    extra_args: tuple
    children: _Children = dataclasses.field(default_factory=_Children)

    @property
    def project(self):
        digest = hashlib.sha256("\n".join(self.runs).encode()).hexdigest()
        return os.path.join(PROJECT, f"grid_{digest[:12]}")

    def command(self, run):
        return command(run, self.root, self.data_dir, self.extra_args)


def _oracle(grid, role, lease_seconds):
    """The grid's leased RunsOracle; off a worker, with the state a
    previous invocation of this grid left (its failures reopened)."""
    oracle = distributed.leased(RunsOracle)(
        list(grid.runs), lease_seconds=lease_seconds
    )
    oracle._set_project_dir(grid.root, grid.project)
    saved = os.path.join(grid.root, grid.project, "oracle.json")
    if role == "worker" or not os.path.exists(saved):
        return oracle
    chief = json.load(open(saved)).get("chief")
    if chief and chief.get("pid") != os.getpid():
        if progress.chief_alive(chief) and role is None:
            raise UsageError(
                f"pid {chief['pid']} on {chief['host']} runs this grid in "
                f"{grid.root}; wait for it, stop it, or run this command "
                'as one of its workers (README "Grids across machines").'
            )
    oracle.reload()
    if role is None:  # nobody else runs this grid's trials: all back
        oracle.release_ongoing()
    oracle.reopen(lambda key: is_done(grid.runs[key], grid.root))
    return oracle


def run_all(
    runs,
    root,
    data_dir=None,
    extra_args=(),
    jobs=1,
    lease_seconds=distributed.LEASE_SECONDS,
):
    """Runs every run not done yet, `jobs` at a time on this machine (as
    a worker: of the chief's grid; as the chief: serves them); returns
    the runs that failed. Exits 2, running nothing, when a run's
    directory holds another run."""
    reuse.check(runs, root)
    role = distributed.role()
    grid = _Grid(
        {progress.key(root, r.output_dir(root)): r for r in runs},
        root,
        data_dir,
        tuple(extra_args),
    )
    os.makedirs(root, exist_ok=True)
    oracle = _oracle(grid, role, lease_seconds)
    entries = [(r.name, r.seed, r.output_dir(root)) for r in runs]
    if role != "worker":
        progress.write_manifest(root, entries, grid.project)
        oracle.save()
    failed, printing = [], threading.Lock()
    done_before = sum(is_done(r, root) for r in runs)
    bar = console.Progress(
        os.path.basename(os.path.normpath(root)),
        len(runs),
        "run",
        start=done_before,
    )

    def say(message=None, failure=False):
        """Off a terminal, the grid's state and `message` on one line; on
        one, the bar over runs, with a failure's line above it."""
        with printing:
            s = progress.summary(progress.status(root, entries), workers=jobs)
            c, eta = s["counts"], s["eta_seconds"]
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

    def started(run):
        say(f"{run.name} seed {run.seed}")

    def ended(run, code):
        if not code:
            return say()
        with printing:
            failed.append(run)
        log = os.path.join(run.output_dir(root), "pipeline.log")
        say(f"  failed (exit {code}); see {log}", failure=True)

    try:
        if role == "chief":
            reported = set(oracle.end_order)

            def tick():  # the workers' runs, as they end
                for trial_id in oracle.end_order:
                    if trial_id not in reported:
                        reported.add(trial_id)
                        trial = oracle.trials[trial_id]
                        run = grid.runs[trial.hyperparameters.values["run"]]
                        metrics = trial.metrics.get_config()["metrics"]
                        code = progress.last_metric(metrics, "exit_code")
                        ended(run, int(code or 0))

            distributed.serve(oracle, tick)
        else:
            _work(grid, oracle, jobs, (started, ended), lease_seconds)
    finally:
        bar.close()
    if role != "worker":
        failed = [
            grid.runs[t.hyperparameters.values["run"]]
            for t in oracle.trials.values()
            if t.status == FAILED
        ]
    done = sum(is_done(r, root) for r in runs)
    console.say(f"[{done}/{len(runs)} done, {len(failed)} failed]")
    return [r for r in runs if r in failed]


def _work(grid, oracle, jobs, report, lease_seconds):
    """`jobs` tuners run the oracle's trials, each in a thread; a stop
    (SIGINT, SIGTERM) passes to the runs in flight (see _Children)."""
    base = distributed.tuner_id() if distributed.role() else "job"
    tuners = [
        RunsTuner(oracle, grid, f"{base}.{i}", report, lease_seconds)
        for i in range(max(jobs, 1))
    ]
    threads = [
        threading.Thread(target=_search, args=(t,), daemon=True) for t in tuners
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # the main thread still takes signals
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM: see _Children
        grid.children.stop(getattr(e, "signum", signal.SIGINT))
        for thread in threads:
            thread.join()
        raise


def _search(tuner):
    with contextlib.suppress(FatalError):  # stopped: the runs stay pending
        tuner.work()
