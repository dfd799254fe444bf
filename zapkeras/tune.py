"""Entry point: `python -m zapkeras.tune --gin_file=... --tune_param=...`.

A keras-tuner search (random, grid or Bayesian) over gin bindings, each
trial a full `zapkeras.train` run with every zapkeras.train flag given here
(README "Configuration"). Misspelled or malformed sweeps exit 2 before
any trial: every swept value is bound once on the base config (gin
rejects unknown names, and a swept macro must be one the config sets),
and --objective must be a number the results.json of the config, and of
it with each swept value, will hold (`runner.result_paths()`, from the
protocols' declared `result_keys()`; no data is loaded).
OUTPUT_DIR holds keras_tuner/ (the oracle's state: rerunning the command
resumes the sweep),
trial_<id>/ (each run), tensorboard/ (HParams) and tune_results.json.
With keras-tuner's KERASTUNER_* variables set, the same command is the
chief (which serves the trials and writes the summary) or a worker (which
runs the trials it is given): README "Grids across machines".
Exit status 1 when a trial failed, 2 when the first failure was a trial
that exited 2 (a user mistake such as a diverging learning rate).
"""

import math
import os
import sys

import keras_tuner
from absl import flags
from absl import logging

import gin
from zapkeras import cli
from zapkeras import runner
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import files
from zapkeras.tuning import distributed
from zapkeras.tuning import objective as objective_lib
from zapkeras.tuning import params as params_lib
from zapkeras.tuning import report
from zapkeras.tuning.tuner import TrainTuner

ORACLES = {
    "random": keras_tuner.oracles.RandomSearchOracle,
    "grid": keras_tuner.oracles.GridSearchOracle,
    "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
}
DEFAULT_TRIALS = 10  # random and Bayesian; grid defaults to the whole grid

flags.DEFINE_multi_string(
    "tune_param",
    [],
    "What to sweep: NAME=choice(a,b,...), NAME=range(lo,hi) or "
    "NAME=log_range(lo,hi); NAME is a gin binding target or macro.",
)
flags.DEFINE_enum("tuner", "random", list(ORACLES), "keras-tuner oracle.")
flags.DEFINE_integer(
    "max_trials",
    None,
    f"Trials to run; default {DEFAULT_TRIALS}, or the whole grid for "
    "--tuner=grid (a range counts 10 evenly spaced values there).",
    lower_bound=1,
)
flags.DEFINE_string(
    "objective",
    "transfer.sequential.test_accuracy",
    "Key path of a number in each trial's results.json, checked against "
    "what the config writes before any trial, e.g. continual.test_accuracy "
    "or conditions.iid_zap.transfer.sequential.test_accuracy.",
)
flags.DEFINE_enum(
    "objective_direction", "max", ["max", "min"], "Maximise or minimise."
)
flags.DEFINE_integer(
    "max_consecutive_failed_trials",
    3,
    "Stop the search after this many failed trials in a row.",
    lower_bound=1,
)

flags.DEFINE_integer(
    "worker_timeout",
    distributed.LEASE_SECONDS,
    "Across machines: seconds a worker may fall silent before the chief "
    "gives its trial to another.",
    lower_bound=4,
    allow_override=True,  # pipelines.cli's too, in a process with both
)

flags.adopt_module_key_flags(cli)  # --help lists the train flags too
FLAGS = cli.FLAGS


def _train_args():
    """Every zapkeras.train flag given, except --output_dir."""
    args = []
    for flag in FLAGS.get_flags_for_module(cli):
        if flag.present and flag.name != "output_dir":
            values = (
                flag.value if isinstance(flag.value, list) else [flag.value]
            )
            args += [f"--{flag.name}={v}" for v in values]
    return args


def _result_paths():
    """(the key paths of the numbers results.json will hold, a name of the
    config) for the gin config just parsed: its runner and protocols are
    built (so validated), no data is loaded."""
    built = runner.create_runner(
        output_dir=FLAGS.output_dir or "",
        data_dir=None,
        seed=FLAGS.seed,
        strategy=None,
        experiment=cli.experiment_name(FLAGS.gin_file),
    )
    config = f"{' + '.join(FLAGS.gin_file)} (a {type(built).__name__})"
    return built.result_paths(), config


def _check_sweep(params, key):
    """Binds every swept value once on the base config: misspelled names,
    gin syntax errors, invalid settings and an --objective the run will
    not write fail here, before any trial."""
    objective_lib.check_syntax(key)
    cli.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    objective_lib.check(key, *_result_paths())
    for param in params:
        if param.is_macro:
            try:
                gin.query_parameter(f"%{param.name}")
            except ValueError:
                raise UsageError(
                    f"--tune_param={param.spec!r}: the gin config sets no "
                    f"macro {param.name!r}; sweep a macro it sets (e.g. "
                    "WIDTH) or a binding configurable.parameter."
                ) from None
    for param in params:
        for value in param.values:
            binding = param.binding(value)
            try:
                cli.parse_gin(FLAGS.gin_file, [*FLAGS.gin_param, binding])
                paths, config = _result_paths()
            except UsageError as e:
                raise UsageError(
                    f"--tune_param={param.spec!r} gives the binding "
                    f"{binding!r}, which fails: {e}"
                ) from None
            objective_lib.check(key, paths, config, binding)


def make_oracle(
    tuner,
    params,
    objective,
    direction,
    max_trials,
    seed,
    lease_seconds=distributed.LEASE_SECONDS,
):
    """The keras-tuner oracle `tuner` over `params`, for `max_trials`
    trials (None: the default) seeded by `seed`, with leases
    (`distributed`)."""
    space = params_lib.search_space(params)
    if max_trials is None and tuner == "grid":
        max_trials = math.prod(len(list(h.values)) for h in space.space)
    try:
        oracle = distributed.leased(ORACLES[tuner])(
            lease_seconds=lease_seconds,
            objective=keras_tuner.Objective(objective, direction),
            max_trials=max_trials or DEFAULT_TRIALS,
            hyperparameters=space,
            allow_new_entries=False,
            seed=seed + 1,  # keras-tuner draws a random seed for 0
            max_retries_per_trial=0,  # runs are deterministic; a dead
            # worker's trial is retried through its lease (`distributed`)
            # Counted by TrainTuner instead: keras-tuner raises before
            # saving the trial that reaches its limit.
            max_consecutive_failed_trials=sys.maxsize,
        )
    except ImportError as e:  # the Bayesian oracle needs scikit-learn
        raise UsageError(
            f"--tuner={tuner} needs a package that is not installed ({e}); "
            "pip install 'keras-tuner[bayesian]', or use --tuner=random."
        ) from None
    oracle.verbose = 0  # TrainTuner prints its own progress lines
    return oracle


def _output_dir():
    if FLAGS.output_dir:
        path = FLAGS.output_dir
    else:
        name = os.path.basename(cli.default_output_dir(FLAGS.gin_file))
        path = os.path.join("runs", f"tune-{name}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(
            f"--output_dir={path!r} cannot be created ({e.strerror}); choose "
            "a directory you can write to."
        ) from None
    return path


def run(argv=None):
    """Validates the sweep, runs the trials, reports; returns exit status."""
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if FLAGS.overwrite:
        raise UsageError(
            "--overwrite is zapkeras.train's; a sweep resumes from its "
            "OUTPUT_DIR, so delete that directory (or choose another "
            "--output_dir) to start a sweep afresh."
        )
    params = params_lib.parse_tune_params(FLAGS.tune_param)
    _check_sweep(params, FLAGS.objective)
    oracle = make_oracle(
        FLAGS.tuner,
        params,
        FLAGS.objective,
        FLAGS.objective_direction,
        FLAGS.max_trials,
        FLAGS.seed,
        FLAGS.worker_timeout,
    )
    output_dir = _output_dir()
    train_args = _train_args()
    sweep = {
        "experiment": cli.experiment_name(FLAGS.gin_file),
        "tuner": FLAGS.tuner,
        "tune_params": list(FLAGS.tune_param),
        "objective": FLAGS.objective,
        "direction": FLAGS.objective_direction,
        "train_args": train_args,
    }
    tuner = TrainTuner(
        oracle,
        params,
        output_dir,
        train_args,
        sweep,
        FLAGS.max_consecutive_failed_trials,
        FLAGS.worker_timeout,
    )
    role = distributed.role()
    if role == "worker":
        console.say(
            f"zapkeras.tune: worker {tuner.tuner_id} of the chief at "
            f"{os.environ['KERASTUNER_ORACLE_IP']}:"
            f"{os.environ['KERASTUNER_ORACLE_PORT']}; trials → {output_dir}"
        )
        tuner.search()
        console.say(f"worker {tuner.tuner_id}: no trial left")
        return 0
    report.write_hparams_config(output_dir, params, FLAGS.objective)
    serving = (
        " (serving the workers at $KERASTUNER_ORACLE_IP:PORT)"
        if role == "chief"
        else ""
    )
    console.say(
        f"zapkeras.tune: {FLAGS.tuner} search of {sweep['experiment']}, up "
        f"to {oracle.max_trials} trials ({len(oracle.trials)} run before), "
        f"{FLAGS.objective_direction} {FLAGS.objective} → {output_dir}"
        f"{serving}\n  the same command with --output_dir={output_dir} "
        "resumes it"
    )
    tuner.search()
    if tuner.stopped:
        console.say(f"\n{tuner.stopped}")
    summary = tuner.summary()
    files.write_json(os.path.join(output_dir, "tune_results.json"), summary)
    console.say(report.final_text(summary, tuner.params))
    return exit_status(summary)


def exit_status(summary):
    """0 when no trial failed; 2 when the first failure was a trial that
    exited 2 (a user mistake), else 1."""
    failed = [t for t in summary["trials"] if t["status"] == "failed"]
    if not failed:
        return 0
    return 2 if failed[0].get("exit_code") == 2 else 1


def main(argv):
    return cli.main_guard(lambda: run(argv))


def console_main():
    """The `zapkeras-tune` console script."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
