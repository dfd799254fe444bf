"""What every protocol shares: its run context, its data and one shape.

A protocol (pretraining, transfer, analysis, continual learning) is a
configurable object:

- constructing it with its settings (gin binds them) validates every
  setting that needs no data, so a mistake exits 2 before anything runs;
- `check(data)` validates those that depend on the data (e.g. more
  transfer classes than the pool has), before any protocol trains;
- `protocol(model, data, context)` runs it and returns its results section;
- `columns(result)` gives its cells of the runner's comparison table and
  `figures(runs)` its plots over conditions, so the runner knows no
  protocol's keys;
- `result_keys()` declares, from the settings alone, the key paths of the
  numbers its results section may hold, so `zapkeras.tune` can check an
  objective before any trial (tests/test_result_keys.py holds each to what
  a run writes).
"""

import dataclasses
import inspect
import os

import tensorflow as tf

from zapkeras.data import LabeledImages
from zapkeras.outputs import tensorboard


@dataclasses.dataclass
class RunContext:
    """What a protocol needs to know about the run it is part of.

    `build_model()` makes a fresh network like the run's (under the
    strategy's scope), for protocols that need a second one.
    """

    seed: int
    strategy: tf.distribute.Strategy
    output_dir: str
    condition: str = ""
    writer: tensorboard.Writer = None
    build_model: object = None

    @property
    def label(self):
        return self.condition or "run"

    def curves_path(self, name):
        """Where this condition's curve or array file `name` goes."""
        return os.path.join(self.output_dir, "curves", self.condition, name)

    def checkpoint_dir(self, phase):
        return os.path.join(
            self.output_dir, "checkpoints", self.condition, phase
        )


@dataclasses.dataclass
class Data:
    """The images of one experiment (LabeledImages; None where unused).

    train / val: the pretraining (or continual training) images and the
    held-out ones; transfer: the pool of new classes transfer draws from;
    test: the continual problems' test images.
    """

    train: LabeledImages = None
    val: LabeledImages = None
    transfer: LabeledImages = None
    test: LabeledImages = None


class Protocol:
    """Base of the protocols (module docstring)."""

    def check(self, data):
        """Validates the settings that depend on `data`."""

    def __call__(self, model, data, context):
        raise NotImplementedError

    def columns(self, result):
        """{column: text} of this protocol's cells in the results table."""
        return {}

    def figures(self, runs):
        """{name: png} over conditions; `runs` maps each condition to its
        protocol instance after it ran."""
        return {}

    def result_keys(self):
        """The key paths ('by_lr.0.001.test_accuracy') of the numbers the
        results section may hold with these settings; a part written
        `<name>` stands for names known only when it runs (a layer's).
        None: not declared, any key may be there."""
        return None


def result_paths(section, protocol):
    """`protocol.result_keys()` under `section` ('transfer.sequential'),
    or `section.<key>` (any key) when it declares none."""
    keys = protocol.result_keys()
    if keys is None:
        return [f"{section}.<key>"]
    return [f"{section}.{key}" for key in keys]


def build_model(model_fn, num_classes, input_shape):
    """model_fn(num_classes=..., and those of input_shape=, image_size=,
    channels= it accepts)."""
    accepted = inspect.signature(model_fn).parameters
    candidates = {
        "input_shape": tuple(int(d) for d in input_shape),
        "image_size": int(input_shape[0]),
        "channels": int(input_shape[-1]),
    }
    kwargs = {k: v for k, v in candidates.items() if k in accepted}
    return model_fn(num_classes=num_classes, **kwargs)
