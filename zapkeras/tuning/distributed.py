"""keras-tuner's distributed mode, made safe for hour-long trials.

The chief and every worker run the same command; keras-tuner's environment
variables give each its part: `KERASTUNER_TUNER_ID` (`chief`, or a name of
the worker's own), `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`
(where the chief serves its oracle over gRPC). Workers ask the chief for a
trial, run it, report it, and ask again.

keras-tuner alone keeps the trial of a worker that died as "ongoing" for
ever: nobody reruns it and the chief never finishes. Here a worker renews a
lease on its trial while the trial runs (a GetTrial call every quarter of
`lease_seconds`), and a trial whose lease lapsed goes back to keras-tuner's
retry queue for the next worker that asks, without counting as a failed run.
A worker that asks while no new trial is left but others still run is told
to wait (IDLE), not to stop, so a retried trial finds a worker. A restarted
chief reloads the oracle's saved state and gives each ongoing trial a new
lease: a worker still running it keeps it, a dead one's is retried. The
state files are written atomically, for readers while trials run.
"""

import concurrent.futures
import contextlib
import ctypes
import os
import signal
import socket
import threading
import time

import grpc
import keras_tuner
from keras_tuner.engine import trial as trial_lib
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.distribute import utils as dist_utils

from zapkeras.errors import UsageError
from zapkeras.outputs import files

LEASE_SECONDS = 120  # default: how long a silent worker keeps its trial
POLL_SECONDS = 2.0  # how often an idle worker asks again
VARIABLES = (
    "KERASTUNER_TUNER_ID",
    "KERASTUNER_ORACLE_IP",
    "KERASTUNER_ORACLE_PORT",
)
RUNNING = trial_lib.TrialStatus.RUNNING
IDLE = trial_lib.TrialStatus.IDLE
STOPPED = trial_lib.TrialStatus.STOPPED


def role():
    """'chief', 'worker', or None when not distributed (no variables)."""
    try:
        if not dist_utils.has_chief_oracle():
            return None
    except RuntimeError:
        missing = [v for v in VARIABLES if v not in os.environ]
        raise UsageError(
            f"$KERASTUNER_ORACLE_IP is set but ${' and $'.join(missing)} "
            "not: set all of " + ", ".join(VARIABLES) + " on the chief and "
            "every worker (KERASTUNER_TUNER_ID=chief on the chief, a name "
            "of its own on each worker), or none to run on one machine."
        ) from None
    return "chief" if dist_utils.is_chief_oracle() else "worker"


def tuner_id():
    return os.environ.get("KERASTUNER_TUNER_ID", "tuner0")


class Leased:
    """Mixin before a keras-tuner Oracle class: the leases of the module
    doc. Its state adds, per ongoing trial, the worker, when it started
    and the chief's host and pid (for `pipelines.progress`)."""

    def __init__(self, *args, lease_seconds=LEASE_SECONDS, **kwargs):
        super().__init__(*args, **kwargs)
        self.lease_seconds = lease_seconds
        self._seen = {}  # trial id or tuner id → time of its last call
        self._started = {}  # trial id → time it was given to its worker
        self._kept = {}  # ongoing trials of a reloaded state

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        now = time.time()
        self._seen[tuner_id] = now
        self._reap(now)
        trial = super().create_trial(tuner_id)
        if trial.status == STOPPED and self.ongoing_trials:
            self.tuner_ids.add(tuner_id)  # not stopped: it may be needed
            return trial_lib.Trial(self.get_space(), status=IDLE)
        if trial.status == RUNNING:
            self._seen[trial.trial_id] = now
            if trial.trial_id not in self._started:
                self._started[trial.trial_id] = now
                self.save()
        return trial

    @keras_tuner.synchronized
    def get_trial(self, trial_id):
        """The trial; from its worker, a renewal of the trial's lease."""
        self._seen[trial_id] = time.time()
        return super().get_trial(trial_id)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)  # saves before it drops the trial
        self._started.pop(trial.trial_id, None)
        self.save()  # as it is now: not ongoing

    @keras_tuner.synchronized
    def reap(self):
        """Gives the trials whose lease lapsed back to the retry queue and
        forgets workers that stopped asking; returns the trial ids."""
        return self._reap(time.time())

    def _reap(self, now):
        lapsed = []
        for tuner, trial in list(self.ongoing_trials.items()):
            if now - self._seen.get(trial.trial_id, now) > self.lease_seconds:
                del self.ongoing_trials[tuner]
                self.tuner_ids.discard(tuner)
                self._started.pop(trial.trial_id, None)
                self._retry_queue.append(trial.trial_id)
                lapsed.append(trial.trial_id)
        busy = set(self.ongoing_trials)
        for tuner in list(self.tuner_ids - busy):
            if now - self._seen.get(tuner, now) > self.lease_seconds:
                self.tuner_ids.discard(tuner)
        if lapsed:
            self.save()
        return lapsed

    def save(self):
        """Atomically: the live view (pipelines.progress) reads it."""
        files.write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        files.write_json(path, trial.get_state())

    def get_state(self):
        state = super().get_state()
        state["leases"] = {
            trial.trial_id: {
                "tuner_id": tuner,
                "started": self._started.get(trial.trial_id),
            }
            for tuner, trial in self.ongoing_trials.items()
        }
        state["chief"] = {"host": socket.gethostname(), "pid": os.getpid()}
        return state

    def set_state(self, state):
        super().set_state(state)
        self._kept = dict(self.ongoing_trials)
        self._started.update(
            {i: lease["started"] for i, lease in state["leases"].items()}
        )

    def reload(self):
        """The saved state, its ongoing trials kept with a new lease."""
        super().reload()  # sends the ongoing trials to the retry queue
        now = time.time()
        for tuner, trial in self._kept.items():
            self._retry_queue.remove(trial.trial_id)
            self.ongoing_trials[tuner] = trial
            self.tuner_ids.add(tuner)
            self._seen[trial.trial_id] = now
        self._kept = {}

    @keras_tuner.synchronized
    def release_ongoing(self):
        """Sends every ongoing trial back to the queue (keras-tuner's own
        reload: when nobody else can be running them)."""
        for trial in self.ongoing_trials.values():
            self._retry_queue.append(trial.trial_id)
        self.tuner_ids -= set(self.ongoing_trials)
        self.ongoing_trials = {}
        self.save()


def leased(oracle_class):
    """`oracle_class` with the leases of the module doc."""
    return type(f"Leased{oracle_class.__name__}", (Leased, oracle_class), {})


def serve(oracle, on_tick=None, every=1.0):
    """Serves `oracle` to the workers (keras-tuner's servicer) until no
    trial is left and every worker has been told to stop; reaps lapsed
    leases and calls `on_tick()` every `every` seconds."""
    address = (
        f"{os.environ['KERASTUNER_ORACLE_IP']}:"
        f"{os.environ['KERASTUNER_ORACLE_PORT']}"
    )
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UsageError(
            f"the chief cannot serve at {address} ($KERASTUNER_ORACLE_IP:"
            "$KERASTUNER_ORACLE_PORT): the port is taken or the address is "
            "not this machine's; choose a free port."
        )
    server.start()
    try:
        while True:
            time.sleep(every)
            oracle.reap()
            if on_tick is not None:
                on_tick()
            if servicer.stop_triggered and oracle_chief.exit_chief(oracle):
                return
    finally:
        server.stop(grace=None)


@contextlib.contextmanager
def lease(oracle, trial_id, seconds):
    """Renews the lease of `trial_id` every seconds / 4 while in the block
    (a failed renewal is retried at the next beat)."""
    stop = threading.Event()

    def renew():
        while not stop.wait(seconds / 4):
            with contextlib.suppress(Exception):
                oracle.get_trial(trial_id)

    beat = threading.Thread(target=renew, daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()  # looked up here: a child after fork calls it only
_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """A `preexec_fn`: the child gets SIGTERM when the process (thread)
    that started it dies, so a killed worker leaves no run behind writing
    to a trial directory that another worker retries (Linux; elsewhere a
    no-op)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerSearch:
    """Mixin before keras-tuner's BaseTuner: `work` is `BaseTuner.search`'s
    loop, waiting `poll` seconds when told IDLE (keras-tuner's own loop
    asks again at once)."""

    def work(self, poll=POLL_SECONDS):
        self.on_search_begin()
        while True:
            trial = self.oracle.create_trial(self.tuner_id)
            if trial.status == STOPPED:
                break
            if trial.status == IDLE:
                time.sleep(poll)
                continue
            self.on_trial_begin(trial)
            self._try_run_and_update_trial(trial)
            self.on_trial_end(trial)
        self.on_search_end()
