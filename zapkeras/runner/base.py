"""What both runners share: the run's identity, its output directory,
the console banner, config.gin and results.json.

Output layout (README "Outputs"): config.gin, results.json,
tensorboard/[condition/] (runs train/ and validation/),
checkpoints/[condition/], curves/[condition/], plots/, and
.zapkeras/identity.json (what identifies the run, see
`zapkeras.outputs.run_dir`).
"""

import os
import re

import keras
import tensorflow as tf
from absl import flags

import gin
import zapkeras
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import files
from zapkeras.outputs import run_dir
from zapkeras.outputs import tensorboard
from zapkeras.protocols import base as protocol_base


def instance(protocol, setting):
    """The protocol object `setting` names: gin passes `@name` as the
    configurable class, constructed here (so, under a condition's scope,
    with that condition's bindings; construction validates it)."""
    if not isinstance(protocol, protocol_base.Protocol) and callable(protocol):
        protocol = protocol()
    if not isinstance(protocol, protocol_base.Protocol):
        raise UsageError(
            f"{setting} = {protocol!r} is not a protocol; name one, e.g. "
            "@iid_pretraining or @sequential_transfer."
        )
    return protocol


_MACRO = re.compile(r"^([A-Za-z_]\w*) = (.*)$")


def macros(config):
    """{name: value} of the top-level `NAME = value` lines (the macros) of
    a gin config text, as HParams holds them: bool, int, float or str
    values as they are, others (and continued lines) as their gin text."""
    found, name = {}, None
    for line in config.split("\n"):
        match = _MACRO.match(line)
        if match:
            name = match.group(1)
            found[name] = match.group(2).strip()
        elif name and line[:1].isspace() and line.strip():
            found[name] += " " + line.strip()
        else:
            name = None
    for name, text in found.items():
        value = gin.query_parameter(f"%{name}")
        if isinstance(value, (bool, int, float, str)):
            found[name] = value
    return found


class Runner:
    """Base of `TransferRunner` and `ContinualRunner`.

    Args (from the command line): output_dir, data_dir, seed, strategy,
    experiment (the config's name, e.g. 'omniglot/asb_zap').
    """

    def __init__(self, output_dir, data_dir, seed, strategy, experiment):
        self.output_dir = output_dir
        self.data_dir = data_dir
        self.seed = seed
        self.strategy = strategy
        self.experiment = experiment

    def protocols(self):
        """{condition: [its protocol objects]}, constructed from the gin
        config (so validated), without loading any data."""
        raise NotImplementedError

    def run(self):
        raise NotImplementedError

    def context(self, condition="", writer=True, build_model=None):
        """The RunContext of `condition` (its TensorBoard writer open)."""
        log_dir = os.path.join(self.output_dir, "tensorboard", condition)
        return protocol_base.RunContext(
            seed=self.seed,
            strategy=self.strategy,
            output_dir=self.output_dir,
            condition=condition,
            writer=tensorboard.Writer(log_dir) if writer else None,
            build_model=build_model,
        )

    def build_model(self, model_fn, num_classes, input_shape):
        """The network, seeded by the run's seed, under the strategy."""
        keras.utils.set_random_seed(self.seed)
        with self.strategy.scope():
            return protocol_base.build_model(model_fn, num_classes, input_shape)

    def start(self, description):
        """Claims the output directory and says what runs where.

        Runs after every setting was checked and before anything is trained,
        written or restored: a directory holding a run with other settings
        is a UsageError on every worker (nothing in it changes), unless
        `--overwrite` was given, which deletes that run first; then the
        run's identity is recorded (see `zapkeras.outputs.run_dir`).
        """
        current = run_dir.identity(self.seed)
        overwrite = _overwrite_flag()
        differ = [] if overwrite else run_dir.check(self.output_dir, current)
        if _on_any_worker(self.strategy, bool(differ)):
            if differ:
                raise run_dir.refusal(self.output_dir, differ)
            raise UsageError(
                "another worker's output directory holds a run with other "
                "settings (its message lists them); every worker stops. "
                "Rerun with that run's settings, choose another "
                "--output_dir, or add --overwrite."
            )
        removed = []
        try:
            if overwrite:
                removed = run_dir.clear(self.output_dir)
            os.makedirs(self.output_dir, exist_ok=True)
            probe = os.path.join(self.output_dir, ".write-test")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as e:
            raise UsageError(
                f"--output_dir={self.output_dir!r} cannot be written "
                f"({e.strerror}); choose a directory you can write to."
            ) from None
        run_dir.record(self.output_dir, current)
        if removed:
            console.say(
                f"--overwrite: deleted the previous run in {self.output_dir} "
                f"({', '.join(removed)})"
            )
        console.say(
            f"zapkeras {zapkeras.__version__}: {self.experiment} → "
            f"{self.output_dir}\n  {description}; "
            f"{self.strategy.num_replicas_in_sync} replica(s)"
        )

    def summarize(self, writer, metrics, condition=""):
        """The operative config (text) and an HParams session (the gin
        macros, the condition, the headline `metrics` {name: number} as
        `results/<name>`) in `writer`'s train run."""
        config = gin.operative_config_str()
        writer.config(config)
        values = macros(config)
        if condition:
            values["condition"] = condition
        writer.hparams(
            values,
            {
                f"results/{k}": v
                for k, v in metrics.items()
                if isinstance(v, (int, float))
            },
        )

    def save_config(self):
        config = gin.operative_config_str()
        files.write_atomic(os.path.join(self.output_dir, "config.gin"), config)

    def finish(self, results):
        """results.json from {condition: sections}; returns its content."""
        summary = {
            "experiment": self.experiment,
            "seed": self.seed,
            "zapkeras_version": zapkeras.__version__,
            "replicas": self.strategy.num_replicas_in_sync,
        }
        if list(results) == [""]:
            summary.update(results[""])
        else:
            summary["conditions"] = results
        files.write_json(os.path.join(self.output_dir, "results.json"), summary)
        return summary


def _overwrite_flag():
    """`--overwrite` of `zapkeras.train` (False when the flags were not
    parsed, e.g. a runner built from Python)."""
    values = flags.FLAGS
    return values.is_parsed() and "overwrite" in values and values.overwrite


def _on_any_worker(strategy, flag):
    """Whether `flag` holds on any worker: under MultiWorkerMirroredStrategy
    a collective that every worker reaches, so all stop together; else
    `flag` itself."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return flag

    @tf.function
    def count():
        value = strategy.run(lambda: tf.constant(float(flag)))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

    return bool(count().numpy() > 0)
