"""`Method`: the one base of every plasticity method in zapkeras.

A method is a Keras callback with one contract, which the protocols and
diagnostics use and nothing else:

- `every=(n, "steps" | "epochs" | "tasks")`: when it acts (`act()`), after
  every n-th optimizer step (counted by the method and checkpointed, so a
  resumed run keeps the phase and an optimizer reset does not move it),
  epoch of each `fit` (Keras' epoch index, so `initial_epoch` resumes it;
  the continual protocol runs one fit per task) or task (the protocol's
  `on_task_end(task)`, 0-based); `after_step(step)` runs after every step;
- `observed` / `gradients_needed` / `observe(step)`: the per-step data of
  the trainer contract (`zapkeras.methods.hooks`);
- `target`: the model it reads and resets (the wrapped classifier under
  ASB/MetaASB), set by `set_model`; `build(target)` makes its state there;
- `on_task_begin(task)` / `on_task_end(task)`: task boundaries;
- `checkpoint_items()`: every variable a resumed run needs;
- `counters()`: its counts, also written into the Keras `logs` as
  `method/<name>/<counter>` after every step and epoch, so
  `fit(...).history`, the progress bar, CSVLogger and TensorBoard show them
  (put methods before other callbacks in the list);
- `eval_models()`: extra models to evaluate (H&T's tortoise);
- `seed` (constructor) or, left None, `use_run_seed(seed)` from the
  protocol: it fixes every draw the method makes.

Resets happen in callback hooks, i.e. in cross-replica context, so every
replica gets the same values (`zapkeras.methods.resets`).
"""

import warnings

import keras
import numpy as np

from zapkeras import settings
from zapkeras import validate
from zapkeras.errors import UsageError
from zapkeras.methods import hooks

UNITS = ("steps", "epochs", "tasks")


def parse_every(every, owner, units=UNITS):
    """(n, unit) from `every`; UsageError naming `owner`.every otherwise."""
    try:
        count, unit = every
    except (TypeError, ValueError):
        count, unit = None, None
    if isinstance(unit, str) and unit in ("step", "epoch", "task"):
        unit += "s"
    valid = (
        isinstance(count, (int, np.integer))
        and not isinstance(count, bool)
        and count >= 1
        and unit in units
    )
    if not valid:
        raise UsageError(
            f"{owner}.every = {every!r}; use (n, unit) with n an integer ≥ 1 "
            f"and unit one of {', '.join(map(repr, units))}, e.g. "
            f"(10, {units[0]!r})."
        )
    return int(count), unit


def deprecated_every(owner, every, old, value, unit, default):
    """`every` from a deprecated cadence argument `old` = `value`."""
    if value is None:
        return default if every is None else every
    if every is not None:
        raise UsageError(
            f"{owner}: give `every` or the deprecated `{old}`, not both."
        )
    warnings.warn(
        f"{owner}.{old} is deprecated; use every=({value!r}, '{unit}').",
        DeprecationWarning,
        stacklevel=3,
    )
    return (value, unit)


def methods_in(callbacks):
    """The `Method`s among `callbacks`, with distinct log names.

    A name used again (e.g. an L2 `decay/ShrinkAndPerturb` beside a
    perturbing one) gets `_2`, `_3`, … in list order, so neither's counters
    overwrite the other's in the logs.
    """
    methods = [c for c in callbacks if isinstance(c, Method)]
    uses = {}
    for method in methods:
        name = type(method).name
        uses[name] = uses.get(name, 0) + 1
        method.name = name if uses[name] == 1 else f"{name}_{uses[name]}"
    return methods


def counters_of(methods):
    """{'<method>/<counter>': value} of every method in `methods`."""
    return {
        f"{method.name}/{key}": value
        for method in methods
        for key, value in method.counters().items()
    }


@settings.declared
class Method(keras.callbacks.Callback):
    """Base of every method (module docstring).

    Subclasses set `name` (the log prefix) and `counter_names`, and
    implement some of `build`, `observe`, `after_step`, `act`.

    Args:
      every: the cadence of `act()`, (n, unit), or None if the method
        acts only through `after_step` or its task hooks.
      seed: fixes the method's draws; None takes the run's seed when a
        zapkeras protocol runs it (`use_run_seed`), else 0.
      units: the cadence units the method supports.
    """

    name = "method"
    counter_names = ()
    observed = ()
    gradients_needed = False
    # Epoch cadence: act at the end of epoch e when (e + 1 - phase) % n == 0,
    # or ("begin") at the start of epoch e > 0 when e % n == 0.
    epoch_hook = "end"
    phase = 0

    def __init__(self, every=None, seed: settings.Seed = None, units=UNITS):
        super().__init__()
        owner = type(self).__name__
        self.every = None if every is None else parse_every(every, owner, units)
        self.seed = seed
        self.target = None
        self._state = {}
        self._counters = {}

    # What subclasses implement.

    def build(self, target):
        """Creates the method's state for `target` (under its scope)."""

    def observe(self, step):
        """Records statistics of one step (replica context)."""

    def after_step(self, step):
        """Runs after step number `step` (1-based; cross-replica context)."""

    def act(self):
        """The method's action at its cadence (cross-replica context).

        `self.moment` is then the count that made it due: the step number,
        the epoch index (as `on_epoch_begin`/`on_epoch_end` get it) or the
        task index, so draws can depend on (seed, moment) only.
        """

    def eval_models(self):
        """{name: compiled-like model} to evaluate beside the target."""
        return {}

    def needs_hook(self):
        """Whether `observe` must run after every step."""
        return bool(self.observed) or self.gradients_needed

    # The contract the protocols use.

    def use_run_seed(self, seed):
        """Takes the run's seed unless one was given; call before `fit`."""
        if self.seed is None:
            if self.target is not None:
                raise UsageError(
                    f"{type(self).__name__}.use_run_seed after the method "
                    "built its state; call it before fit."
                )
            self.seed = validate.seed(seed, f"{type(self).__name__}.seed")

    def on_task_begin(self, task):
        """Called by the continual protocol before task `task` (0-based)."""

    def on_task_end(self, task):
        """Called by the continual protocol after task `task` (0-based)."""
        self._fire("tasks", task + 1, task)

    def counters(self):
        """{counter name: value} (floats), e.g. {'reinitialized': 12.0}."""
        return {k: float(v.numpy()) for k, v in self._counters.items()}

    def checkpoint_items(self):
        """{name: trackable} of all method state, for tf.train.Checkpoint.

        The state exists once the method has its model: call
        `set_model(model)` (as `fit` does) before restoring into it.
        """
        if self.target is None:
            raise UsageError(
                f"{type(self).__name__}.checkpoint_items() before the "
                "method has a model; call method.set_model(model) first."
            )
        return {**self._state, "seed": self.seed_generator.state}

    # State.

    def add_state(self, name, value, dtype="float32"):
        """A state variable (only_first_replica), kept for checkpoints."""
        variable = keras.Variable(
            value,
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
            name=name.replace("/", "_"),
        )
        self._state[name] = variable
        return variable

    def count(self, counter, amount=1):
        """Adds `amount` to a counter (cross-replica context)."""
        self._counters[counter].assign_add(amount)

    def set_counter(self, counter, value):
        """Sets a gauge-like counter (e.g. a last-measured fraction)."""
        self._counters[counter].assign(value)

    # Keras hooks.

    def set_model(self, model):
        super().set_model(model)
        target = hooks.target(model)
        if self.target is not target:
            if not target.built:
                raise UsageError(
                    f"{type(self).__name__}: model {target.name!r} is not "
                    "built; start it from keras.Input (or call model.build) "
                    "before fit."
                )
            self._state = {}
            with target.distribute_strategy.scope():
                self.steps = self.add_state("steps", 0, dtype="int64")
                self.seed_generator = keras.random.SeedGenerator(self.seed or 0)
                self._counters = {
                    name: self.add_state(f"counter/{name}", 0.0, "float64")
                    for name in self.counter_names
                }
                self.target = target
                self.build(target)
        if self.needs_hook():
            hooks.install(model, self)

    @property
    def optimizer(self):
        """The optimizer of the trainer being fit (its slots cover the
        target's variables)."""
        return self.model.optimizer

    def _every_step(self):
        return (
            self.needs_hook()
            or (self.every is not None and self.every[1] == "steps")
            or type(self).after_step is not Method.after_step
        )

    def _fire(self, unit, count, moment):
        """act() if the cadence is due at `count` units."""
        if self.every is None or self.every[1] != unit:
            return
        if self.target is None:
            raise UsageError(
                f"{type(self).__name__} has no model yet; pass it to "
                "model.fit(callbacks=[...]) or call set_model first."
            )
        if (count - self.phase) % self.every[0] == 0:
            self.moment = moment
            self.act()

    def on_train_begin(self, logs=None):
        steps = getattr(self.model, "steps_per_execution", 1)
        if self._every_step() and steps != 1:
            raise UsageError(
                f"{type(self).__name__} acts after every optimizer step, but "
                f"the model was compiled with steps_per_execution={steps}, "
                "so Keras calls callbacks once per that many steps; compile "
                "with steps_per_execution=1."
            )

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.steps.assign_add(1).numpy())
        self.after_step(step)
        self._fire("steps", step, step)
        self._log(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch_hook == "begin" and epoch > 0:
            self._fire("epochs", epoch, epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_hook == "end":
            self._fire("epochs", epoch + 1, epoch)
        self._log(logs)

    def _log(self, logs):
        if logs is not None:
            logs.update(
                {
                    f"method/{self.name}/{key}": value
                    for key, value in self.counters().items()
                }
            )
