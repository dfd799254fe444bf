"""`python -m zapkeras.tune`: the --tune_param grammar, the oracles, and
sweeps of tiny quickstart runs as a user runs them (objectives read from
each trial's results.json, HParams summaries, resume, failed trials and
exit status 2 for mistakes before any trial)."""

import json
import os

import keras_tuner
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.cli_utils import CONTINUAL_TINY
from tests.cli_utils import quickstart_tiny
from tests.cli_utils import run_module
from zapkeras import tune
from zapkeras.errors import UsageError
from zapkeras.tuning import params as params_lib
from zapkeras.tuning import report
from zapkeras.tuning import tuner as tuner_lib
from zapkeras.tuning.tuner import TrainTuner
from zapkeras.tuning.tuner import lookup
from zapkeras.tuning.tuner import numeric_keys

TINY = quickstart_tiny(width=8, extra=["TransferRunner.conditions = None"])
LR = "iid_pretraining.learning_rate"


def _json(path):
    with open(path) as f:
        return json.load(f)


# --- the --tune_param grammar ---------------------------------------------


def test_choice_of_floats_stays_numeric_and_binds_as_written():
    param = params_lib.parse_tune_param(f"{LR}=choice(1e-2, 0.001)")
    assert (param.name, param.kind) == (LR, "choice")
    assert param.values == (0.01, 0.001)
    assert param.binding(0.01) == f"{LR} = 1e-2"
    assert param.binding(0.001) == f"{LR} = 0.001"
    assert not param.is_macro


@pytest.mark.parametrize(
    "text, values",
    [
        ("choice(8, 16)", (8, 16)),
        ("choice(True, False)", (True, False)),
        ("choice('adam', \"sgd\")", ("adam", "sgd")),
    ],
)
def test_choice_of_one_plain_type_keeps_the_python_values(text, values):
    param = params_lib.parse_tune_param(f"x.y={text}")
    assert param.values == values
    assert [type(v) for v in param.values] == [type(v) for v in values]


def test_mixed_choices_and_gin_references_are_tuned_as_their_texts():
    param = params_lib.parse_tune_param(
        "TransferRunner.conditions=choice(None, ('iid', 'iid_zap'), [1, 2])"
    )
    assert param.values == ("None", "('iid', 'iid_zap')", "[1, 2]")
    assert param.binding("('iid', 'iid_zap')") == (
        "TransferRunner.conditions = ('iid', 'iid_zap')"
    )
    ref = params_lib.parse_tune_param(
        "iid_pretraining.zapping = choice(None, @Zapping(), %WIDTH)"
    )
    assert ref.values == ("None", "@Zapping()", "%WIDTH")
    assert ref.binding("@Zapping()") == "iid_pretraining.zapping = @Zapping()"


def test_ranges_declare_int_or_float_hyperparameters():
    width = params_lib.parse_tune_param("WIDTH=range(8, 64)")
    assert width.is_macro and width.is_int
    lr = params_lib.parse_tune_param("scope/a.b=log_range(1e-4, 1e-1)")
    assert lr.values == (1e-4, 0.1) and not lr.is_int
    space = params_lib.search_space([width, lr])
    int_hp, float_hp = space.space
    assert isinstance(int_hp, keras_tuner.engine.hyperparameters.Int)
    assert (int_hp.min_value, int_hp.max_value) == (8, 64)
    assert isinstance(float_hp, keras_tuner.engine.hyperparameters.Float)
    assert float_hp.sampling == "log"
    assert lr.binding(0.00123) == "scope/a.b = 0.00123"
    assert width.binding(17) == "WIDTH = 17"


@pytest.mark.parametrize(
    "spec, says",
    [
        ("", "not of the form"),
        ("lr", "not of the form"),
        ("a.lr=0.1", "not of the form"),
        ("a.lr=choice()", "empty value"),
        ("a.lr=choice(1,,2)", "empty value"),
        ("a.lr=choice(1, 1)", "repeated"),
        ("a.lr=choice(adam)", "'adam' is neither a Python literal"),
        ("a.lr=choice((1, 2)", "unbalanced"),
        ("a.lr=uniform(1, 2)", "unknown kind 'uniform'"),
        ("a.lr=range(1)", "two numbers"),
        ("a.lr=range(2, 1)", "must be smaller"),
        ("a.lr=range('a', 'b')", "finite numbers"),
        ("a.lr=log_range(0, 1)", "positive"),
        ("1a.lr=choice(1)", "not a gin binding target"),
    ],
)
def test_malformed_tune_param_names_the_flag(spec, says):
    with pytest.raises(UsageError) as raised:
        params_lib.parse_tune_param(spec)
    assert f"--tune_param={spec!r}" in str(raised.value)
    assert says in str(raised.value)


def test_tune_params_required_and_each_name_once():
    with pytest.raises(UsageError, match="--tune_param is required"):
        params_lib.parse_tune_params([])
    with pytest.raises(UsageError, match="more than once"):
        params_lib.parse_tune_params(["a.b=choice(1, 2)", "a.b=range(1, 3)"])


# --- objectives and the oracles -------------------------------------------


def test_objective_key_paths_match_keys_that_hold_dots():
    results = {
        "transfer": {
            "sequential": {
                "test_accuracy": 0.5,
                "by_lr": {"0.001": {"test_accuracy": 0.25}},
            }
        },
        "experiment": "quickstart",
    }
    assert lookup(results, "transfer.sequential.test_accuracy") == 0.5
    assert (
        lookup(results, "transfer.sequential.by_lr.0.001.test_accuracy") == 0.25
    )
    assert lookup(results, "transfer.sequential.nope") is None
    assert lookup(results, "experiment.x") is None
    assert numeric_keys(results) == [
        "transfer.sequential.test_accuracy",
        "transfer.sequential.by_lr.0.001.test_accuracy",
    ]


def test_best_follows_the_direction():
    records = {
        "0": {"trial_id": "0", "status": "completed", "objective": 0.2},
        "1": {"trial_id": "1", "status": "failed", "objective": None},
        "2": {"trial_id": "2", "status": "completed", "objective": 0.7},
    }
    assert report.best(records, "max")["trial_id"] == "2"
    assert report.best(records, "min")["trial_id"] == "0"
    assert report.best({"1": records["1"]}, "max") is None


def _propose_all(oracle, tmp_path):
    """Runs the oracle's loop with made-up scores; returns proposed values."""
    oracle._set_project_dir(str(tmp_path), "p")
    proposed = []
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            return proposed
        value = trial.hyperparameters.values["a.b"]
        proposed.append(value)
        oracle.update_trial(trial.trial_id, {"obj": float(value)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


@pytest.mark.parametrize("tuner", ["random", "grid"])
def test_random_and_grid_propose_each_choice_once(tuner, tmp_path):
    params = [params_lib.parse_tune_param("a.b=choice(1, 2, 3, 4)")]
    oracle = tune.make_oracle(tuner, params, "obj", "max", 4, seed=0)
    assert sorted(_propose_all(oracle, tmp_path)) == [1, 2, 3, 4]


def test_bayesian_proposes_max_trials_points_of_the_space(tmp_path):
    params = [params_lib.parse_tune_param("a.b=choice(1, 2, 3, 4)")]
    oracle = tune.make_oracle("bayesian", params, "obj", "max", 6, seed=0)
    proposed = _propose_all(oracle, tmp_path)
    assert len(proposed) == 6 and set(proposed) <= {1, 2, 3, 4}


def test_a_repeated_point_reuses_the_completed_trial(tmp_path):
    """The Bayesian oracle may propose a point again; the run would give the
    same result, so the tuner reuses it instead of rerunning."""
    params = [params_lib.parse_tune_param("a.b=choice(1, 2)")]
    oracle = tune.make_oracle("random", params, "obj", "max", 3, seed=0)
    tuner = TrainTuner(oracle, params, str(tmp_path), [], {}, 3)
    first = oracle.create_trial("tuner0")
    oracle.update_trial(first.trial_id, {"obj": 0.5})
    first.status = "COMPLETED"
    oracle.end_trial(first)
    again = keras_tuner.engine.trial.Trial(
        first.hyperparameters.copy(), trial_id="1", status="RUNNING"
    )
    assert tuner.run_trial(again) == {"obj": 0.5}
    assert tuner.outcomes["1"] == {"exit_code": 0, "same_as": "0"}
    assert not os.path.exists(tmp_path / "trial_1")


def test_grid_defaults_to_the_whole_grid_and_seeds_repeat(tmp_path):
    params = params_lib.parse_tune_params(
        ["a.b=choice(1, 2, 3)", "c.d=choice('x', 'y')"]
    )
    grid = tune.make_oracle("grid", params, "obj", "max", None, seed=0)
    assert grid.max_trials == 6
    runs = [
        tune.make_oracle("random", params, "obj", "max", 4, seed=s)
        for s in (0, 0)
    ]
    draws = [
        _propose_all(oracle, tmp_path / str(i)) for i, oracle in enumerate(runs)
    ]
    assert draws[0] == draws[1]
    assert runs[0].max_trials == 4


# --- the command ------------------------------------------------------------


def _tune(*args):
    return run_module("zapkeras.tune", *TINY, *args)


def test_help_lists_tune_and_train_flags_one_line_each():
    proc = run_module("zapkeras.tune", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) < 40
    flag_lines = [s.split()[0] for s in lines if s.startswith("  --")]
    for name in (
        "--tune_param",
        "--tuner=random",
        "--max_trials",
        "--objective=transfer.sequential.test_accuracy",
        "--objective_direction=max",
        "--max_consecutive_failed_trials=3",
        "--gin_file",  # the zapkeras.train flags each trial gets
        "--gin_param",
        "--output_dir",
        "--data_dir",
        "--seed=0",
        "--strategy=auto",
    ):
        assert flag_lines.count(name) == 1, (name, proc.stdout)
    assert "--helpfull" in proc.stdout


@pytest.mark.parametrize(
    "args, says",
    [
        ([f"--tune_param={LR}=choice(0.1)", "--max_trials=0"], "max_trials"),
        ([f"--tune_param={LR}=choice(0.1)", "--tuner=hyperband"], "tuner"),
        ([f"--tune_param={LR}=choice(0.1"], "--tune_param="),
        (
            ["--tune_param=iid_pretraining.learning_rat=choice(0.1, 0.01)"],
            "learning_rat",
        ),
        (["--tune_param=WIDHT=choice(8, 16)"], "no macro 'WIDHT'"),
        (
            [
                f"--tune_param={LR}=choice(0.1)",
                "--objective=transfer.sequential.no_such_key",
            ],
            "will hold; choose one it will:\n  pretrain.epochs\n",
        ),
        (  # TINY's TRANSFER_LRS has 0.01; the swept (0.001,) has not
            [
                "--tune_param=TRANSFER_LRS=choice((0.01,), (0.001,))",
                "--objective=transfer.sequential.by_lr.0.01.test_accuracy",
            ],
            "(a TransferRunner) with 'TRANSFER_LRS = (0.001,)' will hold",
        ),
    ],
)
def test_mistakes_exit_2_before_any_trial(args, says, tmp_path):
    out = tmp_path / "sweep"
    proc = _tune(*args, f"--output_dir={out}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_an_objective_a_continual_config_will_not_write_exits_2(tmp_path):
    """The default objective is a transfer key: on a continual config the
    sweep stops before any trial, listing the keys it could use."""
    out = tmp_path / "sweep"
    proc = run_module(
        "zapkeras.tune",
        "--gin_file=gin/permuted/base.gin",
        *CONTINUAL_TINY,
        "--tune_param=continual_learning.learning_rate=choice(0.1, 0.01)",
        f"--output_dir={out}",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        "--objective='transfer.sequential.test_accuracy' is not a number the "
        "results.json of gin/permuted/base.gin (a ContinualRunner) will hold"
    ) in proc.stderr
    for key in ("continual.test_accuracy", "continual.online_accuracy"):
        assert f"\n  {key}\n" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "trial" not in proc.stdout
    assert not out.exists()


def test_a_trial_without_the_objective_fails_naming_what_it_has(
    tmp_path, monkeypatch
):
    """A declared number a run may leave out (e.g. a problem's fresh
    baseline) fails that trial after it ran, listing the numbers it has."""

    def fake_run(command, log_path):
        run_dir = os.path.dirname(log_path)
        with open(log_path, "w") as f:
            f.write("ran\n")
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump({"continual": {"test_accuracy": 0.5}}, f)
        return 0

    monkeypatch.setattr(tuner_lib, "_run_logged", fake_run)
    params = [params_lib.parse_tune_param("a.b=choice(1, 2)")]
    key = "continual.fresh_test_accuracy"
    oracle = tune.make_oracle("random", params, key, "max", 2, seed=0)
    tuner = TrainTuner(oracle, params, str(tmp_path), [], {}, 3)
    trial = oracle.create_trial("tuner0")
    with pytest.raises(keras_tuner.errors.FailedTrialError):
        tuner.run_trial(trial)
    outcome = tuner.outcomes[trial.trial_id]
    assert outcome["exit_code"] == 0
    assert f"results.json has no number at {key!r}" in outcome["reason"]
    assert "its numbers are at: continual.test_accuracy" in outcome["reason"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tune") / "sweep")
    args = [
        f"--tune_param={LR}=choice(0.01, 0.001)",
        "--tuner=grid",
        "--max_trials=5",
        "--seed=3",
        f"--output_dir={out}",
    ]
    proc = _tune(*args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, args, proc


@pytest.mark.slow
def test_sweep_scores_each_trial_from_its_results_json(sweep):
    out, _, proc = sweep
    summary = _json(os.path.join(out, "tune_results.json"))
    trials = summary["trials"]
    assert [t["status"] for t in trials] == ["completed", "completed"]
    assert sorted(t["hyperparameters"][LR] for t in trials) == [0.001, 0.01]
    for trial in trials:
        run = os.path.join(out, f"trial_{trial['trial_id']}")
        assert trial["output_dir"] == run
        results = _json(os.path.join(run, "results.json"))
        assert results["seed"] == 3  # zapkeras.train flags are forwarded
        seq = results["transfer"]["sequential"]
        assert trial["objective"] == seq["test_accuracy"]
        with open(os.path.join(run, "config.gin")) as f:
            assert trial["bindings"][0] in f.read()
    best = max(t["objective"] for t in trials)
    assert summary["best"]["objective"] == best
    line = [s for s in proc.stdout.splitlines() if s.startswith("best: ")]
    assert line and f"objective={best:.6g}" in line[0]


def _events(logdir):
    acc = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    return acc


@pytest.mark.slow
def test_sweep_writes_hparams_sessions(sweep):
    out, _, _ = sweep
    logdir = os.path.join(out, "tensorboard")
    config = _events(logdir).PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        config["_hparams_/experiment"]
    ).experiment
    assert [h.name for h in experiment.hparam_infos] == [LR]
    assert [m.name.tag for m in experiment.metric_infos] == [
        "transfer.sequential.test_accuracy"
    ]
    summary = _json(os.path.join(out, "tune_results.json"))
    for trial in summary["trials"]:
        acc = _events(os.path.join(logdir, f"trial_{trial['trial_id']}"))
        start = plugin_data_pb2.HParamsPluginData.FromString(
            acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        ).session_start_info
        assert start.hparams[LR].number_value == trial["hyperparameters"][LR]
        (event,) = acc.Tensors("transfer.sequential.test_accuracy")
        value = tf.make_ndarray(event.tensor_proto)
        assert value == pytest.approx(trial["objective"], rel=1e-6)


@pytest.mark.slow
def test_rerun_resumes_without_running_trials_again(sweep, tmp_path):
    out, args, _ = sweep
    before = _json(os.path.join(out, "tune_results.json"))
    proc = _tune(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\ntrial 0:" not in proc.stdout
    assert _json(os.path.join(out, "tune_results.json")) == before
    other = [a for a in args if not a.startswith("--tune_param")]
    proc = _tune(*other, f"--tune_param={LR}=choice(0.1, 0.01)")
    assert proc.returncode == 2
    assert "holds a sweep with other settings" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_failed_trials_are_named_and_stop_the_search(tmp_path):
    """Trials 0 and 1 pass every check before the run and diverge in
    training (exit 2); two failures in a row stop the search before trial
    2, and the first failure, a user mistake, sets exit status 2."""
    out = tmp_path / "sweep"
    proc = _tune(
        f"--tune_param={LR}=choice(1e30, 1e31, 0.001)",
        "--tuner=grid",
        "--max_consecutive_failed_trials=2",
        f"--output_dir={out}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "trial 0 FAILED: zapkeras.train exited with 2" in proc.stdout
    assert "trial 1 FAILED: zapkeras.train exited with 2" in proc.stdout
    assert f"bindings: {LR} = 1e30" in proc.stdout
    assert "loss became non-finite" in proc.stdout  # the log's last lines
    assert "stopped after 2 failed trials in a row" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    summary = _json(out / "tune_results.json")
    trials = summary["trials"]
    assert [t["status"] for t in trials] == ["failed", "failed"]
    assert [t["exit_code"] for t in trials] == [2, 2]
    assert all(os.path.exists(t["log"]) for t in trials)
    assert summary["best"] is None


def test_exit_status_is_2_only_when_the_first_failure_was_a_mistake():
    def summary(*codes):
        trials = [{"status": "completed"}]
        trials += [{"status": "failed", "exit_code": c} for c in codes]
        return {"trials": trials}

    assert tune.exit_status(summary()) == 0
    assert tune.exit_status(summary(2, 1)) == 2
    assert tune.exit_status(summary(0, 2)) == 1
    assert tune.exit_status(summary(1)) == 1
