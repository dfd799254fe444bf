"""What both runners share: the run's identity, its output directory,
the console banner, config.gin and results.json.

Output layout (README "Outputs"): config.gin, results.json,
tensorboard/[condition/], checkpoints/[condition/], curves/[condition/],
plots/.
"""

import os

import keras

import gin
import zapkeras
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import files
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
        """Creates the output directory and says what runs where."""
        try:
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
        console.say(
            f"zapkeras {zapkeras.__version__}: {self.experiment} → "
            f"{self.output_dir}\n  {description}; "
            f"{self.strategy.num_replicas_in_sync} replica(s)"
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
