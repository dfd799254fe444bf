"""keras-tuner's distributed mode with leases (zapkeras.tuning.distributed):
the oracle's leases on constructed trials, and `python -m zapkeras.tune`
as a chief and two workers on loopback, one of them SIGKILLed mid-trial."""

import json
import os
import signal
import time

import keras_tuner
import pytest

from tests.cli_utils import Loopback
from tests.cli_utils import quickstart_tiny
from tests.cli_utils import run_module
from zapkeras.errors import UsageError
from zapkeras.tuning import distributed

RUNNING = keras_tuner.engine.trial.TrialStatus.RUNNING


def _oracle(tmp_path, values=(1, 2, 3), lease_seconds=60):
    space = keras_tuner.HyperParameters()
    space.Choice("x", list(values))
    oracle = distributed.leased(keras_tuner.oracles.GridSearchOracle)(
        lease_seconds=lease_seconds,
        objective=keras_tuner.Objective("score", "max"),
        max_trials=len(values),
        hyperparameters=space,
    )
    oracle._set_project_dir(str(tmp_path), "keras_tuner")
    oracle.verbose = 0
    return oracle


def _end(oracle, trial, score=1.0):
    oracle.update_trial(trial.trial_id, {"score": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_a_worker_waits_while_others_run_and_stops_when_all_ended(tmp_path):
    oracle = _oracle(tmp_path, values=(1, 2))
    a, b = oracle.create_trial("a"), oracle.create_trial("b")
    assert (a.status, b.status) == (RUNNING, RUNNING)
    assert oracle.create_trial("c").status == "IDLE"  # b may still die
    _end(oracle, a)
    assert oracle.create_trial("a").status == "IDLE"
    _end(oracle, b)
    assert oracle.create_trial("c").status == "STOPPED"
    assert oracle.tuner_ids == {"a", "b"}  # still to be told to stop


def test_a_lapsed_lease_gives_the_trial_to_the_next_worker(tmp_path):
    oracle = _oracle(tmp_path, values=(1, 2))
    a, b = oracle.create_trial("a"), oracle.create_trial("b")
    oracle._seen[a.trial_id] -= 61  # a fell silent; b renews its lease
    oracle.get_trial(b.trial_id)
    assert oracle.reap() == [a.trial_id]
    assert "a" not in oracle.tuner_ids and "a" not in oracle.ongoing_trials
    retried = oracle.create_trial("c")
    assert retried.trial_id == a.trial_id
    assert retried.hyperparameters.values == a.hyperparameters.values
    assert oracle._run_times[a.trial_id] == 0  # not counted as a failure
    _end(oracle, retried)
    _end(oracle, b)
    assert sorted(oracle.end_order) == sorted([a.trial_id, b.trial_id])


def test_a_reloaded_chief_keeps_ongoing_trials_with_a_new_lease(tmp_path):
    oracle = _oracle(tmp_path)
    done = oracle.create_trial("a")
    _end(oracle, done)
    ongoing = oracle.create_trial("b")
    state = json.load(open(os.path.join(tmp_path, "keras_tuner/oracle.json")))
    assert state["leases"][ongoing.trial_id]["tuner_id"] == "b"
    assert state["chief"]["pid"] == os.getpid()
    restarted = _oracle(tmp_path)
    restarted.reload()
    assert restarted.ongoing_trials["b"].trial_id == ongoing.trial_id
    assert restarted._retry_queue == []
    assert restarted.create_trial("b").trial_id == ongoing.trial_id
    assert restarted.end_order == [done.trial_id]


def test_half_the_variables_name_the_missing_ones(monkeypatch):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    monkeypatch.delenv("KERASTUNER_TUNER_ID", raising=False)
    with pytest.raises(UsageError) as error:
        distributed.role()
    assert "but $KERASTUNER_TUNER_ID and $KERASTUNER_ORACLE_PORT not" in str(
        error.value
    )
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert distributed.role() == "chief"


# --- a chief and two workers on loopback ----------------------------------

LR = "iid_pretraining.learning_rate"
SWEEP = [
    *quickstart_tiny(width=8, extra=["TransferRunner.conditions = None"]),
    f"--tune_param={LR}=choice(0.03, 0.01, 0.003, 0.001)",
    "--tuner=grid",
    "--seed=3",
]


def _objectives(out):
    with open(os.path.join(out, "tune_results.json")) as f:
        trials = json.load(f)["trials"]
    assert [t["status"] for t in trials] == ["completed"] * 4
    return {t["hyperparameters"][LR]: t["objective"] for t in trials}


def _trial_of(out, tuner_id):
    """The trial `tuner_id` runs once its run has started, else None."""
    try:
        with open(os.path.join(out, "keras_tuner", "oracle.json")) as f:
            trial_id = json.load(f)["ongoing_trials"].get(tuner_id)
    except (OSError, ValueError):
        return None
    log = os.path.join(out, f"trial_{trial_id}", "train.log")
    started = os.path.exists(log) and os.path.getsize(log) > 0
    return trial_id if trial_id is not None and started else None


@pytest.mark.slow
def test_chief_and_two_workers_retry_a_killed_workers_trial(tmp_path):
    single = str(tmp_path / "single")
    proc = run_module("zapkeras.tune", *SWEEP, f"--output_dir={single}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = _objectives(single)

    out = str(tmp_path / "sweep")
    args = [*SWEEP, f"--output_dir={out}", "--worker_timeout=8"]
    cluster = Loopback("zapkeras.tune", args, str(tmp_path))
    try:
        for name in ("chief", "w0", "w1"):
            cluster.start(name)
        deadline = time.monotonic() + 600
        while (killed := _trial_of(out, "w0")) is None:
            assert time.monotonic() < deadline
            assert cluster.processes["w0"].poll() is None
            time.sleep(0.5)
        cluster.processes["w0"].send_signal(signal.SIGKILL)
        cluster.processes["w0"].wait()
        text = cluster.wait("w1")  # w1 ran the retry
        cluster.wait("chief")
    finally:
        cluster.kill_all()

    assert _objectives(out) == expected
    runs = [
        line.split(":")[0]
        for name in ("w0", "w1")
        for line in open(cluster.log(name)).read().split("\n")
        if line.startswith("trial ") and "→" in line
    ]
    assert sorted(set(runs)) == [f"trial {i}" for i in range(4)]
    assert runs.count(f"trial {killed}") == 2  # killed on w0, retried on w1
    assert len(runs) == 5 and f"trial {killed}:" in text
    with open(os.path.join(out, "keras_tuner", "oracle.json")) as f:
        state = json.load(f)
    assert state["ongoing_trials"] == {} and state["retry_queue"] == []
