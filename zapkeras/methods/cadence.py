"""When a periodic method acts: every n optimizer steps, epochs or tasks.

Steps are counted by the optimizer (`optimizer.iterations`, the global step,
so a resumed run keeps the phase); epochs by Keras within one `fit` (the
continual protocol runs one fit per task); tasks by the protocol's
`on_task_end(task)` (0-based). Work done after every optimizer step needs
Keras to call the batch hooks after every step, i.e. `steps_per_execution`
= 1 (with k > 1 they run once per k steps).
"""

import keras

from zapkeras.errors import UsageError

EVERY = ("step", "epoch", "task")


def check_steps_per_execution(model, owner):
    """UsageError unless `model` runs the batch hooks after every step."""
    steps = getattr(model, "steps_per_execution", 1)
    if steps != 1:
        raise UsageError(
            f"{owner} acts after every optimizer step, but the model was "
            f"compiled with steps_per_execution={steps}, so Keras calls the "
            "callback once per that many steps; compile with "
            "steps_per_execution=1."
        )


def check_count(value, setting):
    """UsageError unless `value` is an int ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{setting} = {value!r}; use an integer ≥ 1.")


class Periodic(keras.callbacks.Callback):
    """Calls `self.act()` after every `every_n` steps, epochs or tasks.

    Subclasses implement `act()` (runs in cross-replica context: a callback
    hook) and may implement `build()`, called at every `on_train_begin`.

    Args:
      every: 'step' (after the optimizer step whose global step count is a
        multiple of every_n), 'epoch' (after epochs every_n − 1,
        2·every_n − 1, ... of each fit) or 'task' (at `on_task_end(task)`
        for task + 1 a multiple of every_n).
      every_n: the period, ≥ 1.
      owner: the class name used in error messages.
    """

    def __init__(self, every, every_n, owner):
        super().__init__()
        if every not in EVERY:
            raise UsageError(
                f"{owner}.every = {every!r}; use 'step', 'epoch' or 'task'."
            )
        check_count(every_n, f"{owner}.every_n")
        self.every = every
        self.every_n = every_n
        self._owner = owner

    def build(self):
        """Creates the method's state once the model is known."""

    def act(self):
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        if self.every == "step":
            check_steps_per_execution(self.model, self._owner)
        self.build()

    def on_train_batch_end(self, batch, logs=None):
        if self.every != "step":
            return
        if self.every_n == 1 or (
            int(self.model.optimizer.iterations) % self.every_n == 0
        ):
            self.act()

    def on_epoch_end(self, epoch, logs=None):
        if self.every == "epoch" and (epoch + 1) % self.every_n == 0:
            self.act()

    def on_task_end(self, task):
        if self.every == "task" and (task + 1) % self.every_n == 0:
            self.act()
