"""A keras-tuner Tuner whose trials are whole `zapkeras.train` runs.

Each trial runs `python -m zapkeras.train` with the sweep's own flags plus
the trial's bindings as `--gin_param`, in OUTPUT_DIR/trial_<id>/ (its log in
train.log there), and scores the value at the objective's key path in that
run's results.json. A process per trial isolates gin's global state and the
tf.distribute strategy, so `--strategy=mirrored` works in trials (keras-
tuner's `distribution_strategy` would only wrap a hypermodel build, which a
zapkeras run does not have).

keras-tuner swallows failed trials and stops after its own count of
consecutive failures without saving the last one, so a failure here is
recorded (exit status, reason, log tail) in the tuner's saved state,
printed at once, raised as `FailedTrialError` (no retries: runs are
deterministic) and counted by this tuner after the trial is saved; too
many in a row end the search (the oracle proposes no more trials).

In keras-tuner's distributed mode (`distributed`) the chief serves the
oracle and writes tune_results.json as trials end; each worker runs the
trials it is given in its own OUTPUT_DIR/trial_<id>/ and reports the
objective, or its exit status, through the oracle.
"""

import math
import os
import subprocess
import sys

from keras_tuner.engine import base_tuner
from keras_tuner.engine import trial as trial_lib
from keras_tuner.errors import FailedTrialError
from keras_tuner.src import config as keras_tuner_config

from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import files
from zapkeras.tuning import distributed
from zapkeras.tuning import report

PROJECT = "keras_tuner"  # OUTPUT_DIR/keras_tuner/: the oracle's saved state
LOG_TAIL_LINES = 10
_STATUS = {
    trial_lib.TrialStatus.COMPLETED: "completed",
    trial_lib.TrialStatus.FAILED: "failed",
    trial_lib.TrialStatus.INVALID: "failed",
}


def lookup(results, key):
    """results['a']['b'] for key 'a.b', None when absent. A key that itself
    holds dots (by_lr's '0.001') matches whole: 'by_lr.0.001.test_accuracy'.
    """

    def walk(node, parts):
        if not parts:
            return node
        if isinstance(node, dict):
            for i in range(len(parts), 0, -1):
                name = ".".join(parts[:i])
                if name in node:
                    found = walk(node[name], parts[i:])
                    if found is not None:
                        return found
        return None

    return walk(results, key.split("."))


def numeric_keys(results, prefix=""):
    """The key paths of every number in results.json, for messages."""
    if isinstance(results, dict):
        return [
            path
            for name, value in results.items()
            for path in numeric_keys(value, f"{prefix}{name}.")
        ]
    if isinstance(results, (int, float)) and not isinstance(results, bool):
        return [prefix[:-1]]
    return []


def _tail(path, lines=LOG_TAIL_LINES):
    with open(path, errors="replace") as f:
        return [line.rstrip("\n") for line in f.readlines()[-lines:]]


def _run_logged(command, log_path):
    """Runs `command`, echoing its stdout and appending stdout and stderr to
    `log_path`; returns the exit status."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for name in distributed.VARIABLES:  # the run is no tuner
        env.pop(name, None)
    with open(log_path, "a") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            preexec_fn=distributed.die_with_parent,
        )
        for line in process.stdout:
            log.write(line)
            log.flush()
            console.say("    " + line.rstrip("\n"))
        return process.wait()


class TrainTuner(distributed.WorkerSearch, base_tuner.BaseTuner):
    """Runs each trial as a `zapkeras.train` process (see module doc).

    Args:
      oracle: a keras_tuner Oracle over `params`' search space, with
        max_retries_per_trial=0 and its own failure limit out of reach.
      params: the TuneParams swept.
      output_dir: the sweep's directory; reusing it resumes the sweep.
      train_args: `zapkeras.train` flags every trial gets (all but
        --output_dir); the trial's bindings follow as --gin_param.
      sweep: what defines the sweep (tuner, params, objective, train_args);
        a rerun in the same directory must match it.
      max_consecutive_failures: stop after this many failed trials in a row.
      lease_seconds: in distributed mode, how long a worker that stopped
        renewing its trial's lease keeps the trial.
    """

    def __init__(
        self,
        oracle,
        params,
        output_dir,
        train_args,
        sweep,
        max_consecutive_failures,
        lease_seconds=distributed.LEASE_SECONDS,
    ):
        self.params = {p.name: p for p in params}
        self.output_dir = output_dir
        self.train_args = list(train_args)
        self.sweep = sweep
        self.max_consecutive_failures = max_consecutive_failures
        self.lease_seconds = lease_seconds
        self.outcomes = {}  # trial id → exit status, failure reason, log
        self.stopped = None  # why the search ended early
        self._check_same_sweep()
        super().__init__(
            oracle, directory=output_dir, project_name=PROJECT, overwrite=False
        )
        self._reported = set(getattr(self.oracle, "end_order", ()))

    def _check_same_sweep(self):
        state = files.read_json(
            os.path.join(
                self.output_dir, PROJECT, f"{distributed.tuner_id()}.json"
            )
        )
        stored = (state or {}).get("sweep", self.sweep)
        differ = [k for k in self.sweep if stored.get(k) != self.sweep[k]]
        if differ:
            was = "; ".join(f"{k} = {stored.get(k)!r}" for k in differ)
            raise UsageError(
                f"--output_dir={self.output_dir!r} holds a sweep with other "
                f"settings ({was}); rerun with the same --tuner, "
                "--tune_param, --objective and zapkeras.train flags to resume "
                "it, or choose a new --output_dir."
            )

    def get_state(self):
        return {"sweep": self.sweep, "outcomes": self.outcomes}

    def set_state(self, state):
        self.outcomes = state["outcomes"]

    @property
    def objective(self):
        return self.oracle.objective.name

    def trial_dir(self, trial_id):
        return os.path.join(self.output_dir, f"trial_{trial_id}")

    def bindings(self, values):
        return [self.params[n].binding(v) for n, v in values.items()]

    def search(self):
        """Runs the trials; on a chief, serves them to the workers."""
        if distributed.role() == "chief":
            self.on_search_begin()
            distributed.serve(self.oracle, self._report_ended)
            self._report_ended()
        else:
            self.work()

    def run_trial(self, trial, *args, **kwargs):
        trial_id = trial.trial_id
        twin = None
        if not self._is_worker():  # a worker does not see other trials
            twin = self._completed_twin(trial.hyperparameters.values)
        if twin is not None:  # runs are deterministic: same result
            console.say(
                f"\ntrial {trial_id}: the bindings of trial {twin.trial_id} "
                "again (the Bayesian oracle may repeat a point); its "
                "objective stands, nothing is rerun"
            )
            self.outcomes[trial_id] = {"exit_code": 0, "same_as": twin.trial_id}
            return {self.objective: twin.score}
        bindings = self.bindings(trial.hyperparameters.values)
        run_dir = self.trial_dir(trial_id)
        os.makedirs(run_dir, exist_ok=True)
        console.say(f"\ntrial {trial_id}: {'  '.join(bindings)} → {run_dir}")
        command = [sys.executable, "-m", "zapkeras.train", *self.train_args]
        command += [f"--gin_param={b}" for b in bindings]
        command.append(f"--output_dir={run_dir}")
        log = os.path.join(run_dir, "train.log")
        with distributed.lease(self.oracle, trial_id, self.lease_seconds):
            code = _run_logged(command, log)
        if code:
            errors = [s for s in _tail(log) if s.startswith("zapkeras: error")]
            self._fail(
                trial,
                code,
                f"zapkeras.train exited with {code}"
                + (f" ({errors[-1]})" if errors else ""),
            )
        results = files.read_json(os.path.join(run_dir, "results.json"), {})
        value = lookup(results, self.objective)
        if value is None:
            keys = numeric_keys(results)
            self._fail(
                trial,
                0,
                f"results.json has no number at {self.objective!r} "
                f"(--objective); its numbers are at: "
                f"{', '.join(keys[:12]) or 'none'}"
                + (", …" if len(keys) > 12 else ""),
            )
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            self._fail(
                trial,
                0,
                f"{self.objective} = {value!r} is not a finite number",
            )
        self.outcomes[trial_id] = {"exit_code": 0}
        if self._is_worker():
            console.say(f"trial {trial_id}: {self.objective} = {value:.4g}")
        return {self.objective: float(value)}

    def _completed_twin(self, values):
        for trial in self.oracle.trials.values():
            done = trial.status == trial_lib.TrialStatus.COMPLETED
            if done and trial.hyperparameters.values == values:
                return trial
        return None

    def _fail(self, trial, code, reason):
        log = os.path.join(self.trial_dir(trial.trial_id), "train.log")
        outcome = {"exit_code": code, "reason": reason, "log": log}
        if code:
            outcome["log_tail"] = _tail(log)
        self.outcomes[trial.trial_id] = outcome
        bindings = self.bindings(trial.hyperparameters.values)
        console.say(
            report.failure_text(
                {"trial_id": trial.trial_id, "bindings": bindings, **outcome}
            )
        )
        # Through the oracle to a chief (which may not see this disk).
        metrics = {self.objective: math.nan, "exit_code": float(code)}
        self.oracle.update_trial(trial.trial_id, metrics)
        raise FailedTrialError(reason)

    def on_search_begin(self):
        # keras-tuner prints the traceback of every failed trial (its
        # config.DEBUG is True); `_fail` reports a failure readably instead.
        keras_tuner_config.DEBUG = False
        self.save()  # the sweep's settings, before its first trial

    def on_trial_end(self, trial):
        super().on_trial_end(trial)  # the oracle and this state are saved
        if not self._is_worker():  # a worker reports in run_trial
            self._report_ended()

    def _report_ended(self):
        """Reports the trials that ended since the last call (a line and an
        HParams session each), rewrites tune_results.json, and ends the
        search after too many failures in a row."""
        ended = [i for i in self.oracle.end_order if i not in self._reported]
        if not ended:
            return
        self._reported.update(ended)
        records = self.records()
        for trial_id in ended:
            record = records[trial_id]
            if record["status"] != "completed":
                if trial_id not in self.outcomes:  # failed on a worker
                    console.say(report.failure_text(record))
                continue
            report.write_session(
                self.output_dir, self.params, record, self.objective
            )
            best = report.best(records, self.sweep["direction"])
            console.say(
                f"trial {trial_id}: {self.objective} = "
                f"{record['objective']:.4g} (best so far "
                f"{best['objective']:.4g}, trial {best['trial_id']})"
            )
        files.write_json(
            os.path.join(self.output_dir, "tune_results.json"), self.summary()
        )
        failed_in_a_row = 0
        for trial_id in reversed(self.oracle.end_order):
            if records[trial_id]["status"] != "failed":
                break
            failed_in_a_row += 1
        if failed_in_a_row >= self.max_consecutive_failures:
            self.stopped = (
                f"stopped after {failed_in_a_row} failed trials in a row "
                "(--max_consecutive_failed_trials)"
            )
            self.oracle.max_trials = len(self.oracle.trials)  # no new trial

    def records(self):
        """{trial id: what tune_results.json says of it}, in start order."""
        records = {}
        for trial_id in self.oracle.start_order:
            trial = self.oracle.trials[trial_id]
            values = dict(trial.hyperparameters.values)
            status = _STATUS.get(trial.status, "running")
            twin = self.outcomes.get(trial_id, {}).get("same_as")
            record = {
                "trial_id": trial_id,
                "status": status,
                "hyperparameters": values,
                "bindings": self.bindings(values),
                "objective": trial.score if status == "completed" else None,
                "output_dir": self.trial_dir(twin or trial_id),
            }
            if twin is not None:
                record["same_as"] = twin
            if status == "failed":
                record.update(
                    self.outcomes.get(trial_id) or self._worker_outcome(trial)
                )
            records[trial_id] = record
        return records

    def _worker_outcome(self, trial):
        """What the chief knows of a trial that failed on a worker: the
        exit status it reported, and the log if this disk has it."""
        log = os.path.join(self.trial_dir(trial.trial_id), "train.log")
        message = (trial.message or "failed on a worker").strip()
        outcome = {"reason": message.splitlines()[-1], "log": log}
        if trial.metrics.exists("exit_code"):
            code = int(trial.metrics.get_last_value("exit_code"))
            outcome.update(
                exit_code=code,
                reason=(
                    f"zapkeras.train exited with {code}"
                    if code
                    else "results.json has no finite number at "
                    + self.objective
                ),
            )
        if os.path.exists(log):
            outcome["log_tail"] = _tail(log)
        return outcome

    def summary(self):
        """The content of tune_results.json."""
        records = self.records()
        return {
            **self.sweep,
            "trials": list(records.values()),
            "best": report.best(records, self.sweep["direction"]),
        }
