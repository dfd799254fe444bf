"""Every method on every trainer, on one device and on two replicas.

Trainers: a plain `fit`, ASB, MetaASB and the continual protocol's task
fits (one fit per task between the task hooks). On a tiny MLP each case
asserts that the method acted (its main counter > 0, in `history` too),
that each action changed only the weights it may change (the rest
bit-identical: two snapshots taken just before and just after the method
at the same hook), that replicas hold identical weights, optimizer state
and method state, and that a run resumed from a checkpoint halfway ends
bit-identical to the uninterrupted one.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods as sm
from zapkeras.methods import base
from zapkeras.methods import hooks
from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import MetaASB
from zapkeras.methods.asb import episode_batches
from zapkeras.methods.cbp import ContinualBackprop
from zapkeras.methods.hare_tortoise import HareTortoise
from zapkeras.methods.redo import ReDo
from zapkeras.methods.regularizers import RegenerativeL2
from zapkeras.methods.shrink_perturb import HeadReset
from zapkeras.methods.shrink_perturb import ShrinkAndPerturb
from zapkeras.methods.swr import SelectiveWeightReinit
from zapkeras.methods.zapping import Zapping

STEPS, EPOCHS, BATCH, K, R = 3, 2, 8, 3, 5
TRAINABLE = {
    "dense0/kernel",
    "dense0/bias",
    "dense1/kernel",
    "dense1/bias",
    "classifier/kernel",
    "classifier/bias",
}
HEAD = {"classifier/kernel", "classifier/bias"}


def _every(trainer, unit="epochs"):
    # The continual trainer ends a task after each epoch: act on tasks.
    return (1, "tasks") if trainer == "continual" else (1, unit)


# name: (factory(trainer), main counter, weights an action may change)
METHODS = {
    "swr": (
        lambda t: SelectiveWeightReinit((2, "steps"), 1.0, seed=1),
        "reinitialized",
        TRAINABLE,
    ),
    "cbp": (
        lambda t: ContinualBackprop(0.5, 0, seed=1),
        "replaced",
        TRAINABLE,
    ),
    "redo": (
        lambda t: ReDo((2, "steps"), 1.0, seed=1),
        "recycled",
        TRAINABLE - {"classifier/bias"},
    ),
    "shrink_perturb": (
        lambda t: ShrinkAndPerturb(
            0.9, 0.01, interpolate_to=None, every=_every(t), seed=1
        ),
        "resets",
        TRAINABLE,
    ),
    "head_reset": (
        lambda t: HeadReset(every=_every(t), resample=True, seed=1),
        "resets",
        HEAD,
    ),
    "regenerative_l2": (lambda t: RegenerativeL2(0.5), "resets", TRAINABLE),
    "hare_tortoise": (
        lambda t: HareTortoise(0.5, every=(1, "epochs")),
        "resets",
        TRAINABLE,
    ),
    "zapping": (
        lambda t: Zapping(every=(1, "steps"), fraction=0.5, seed=1),
        "zapped",
        HEAD,
    ),
}
TRAINERS = ("fit", "asb", "meta_asb", "continual")


class Snapshot(keras.callbacks.Callback):
    """The target's weights at every hook, in order (before or after the
    method, by its place in the callback list)."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def _take(self, event):
        target = hooks.target(self.model)
        self.log.append((event, sm.weights(target)))

    def on_epoch_begin(self, epoch, logs=None):
        self._take(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self._take(("batch", batch))

    def on_epoch_end(self, epoch, logs=None):
        self._take(("epoch_end", epoch))


class SaveHalfway(keras.callbacks.Callback):
    """Checkpoints the case's state after the first epoch, after the
    method acted (it comes later in the callback list)."""

    def __init__(self, case):
        super().__init__()
        self.case = case

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0 and self.case.trainer_kind != "continual":
            self.case.save()


def _data(seed=0):
    rng = np.random.default_rng(seed)
    n = STEPS * EPOCHS
    x = rng.normal(size=(n * BATCH, 6)).astype(np.float32)
    y = (np.arange(n * BATCH) % 10).astype(np.int64)
    episodes = {
        "inner_x": rng.normal(size=(n, K, 6)).astype(np.float32),
        "inner_y": np.repeat(np.arange(n)[:, None] % 10, K, 1),
        "remember_x": rng.normal(size=(n, R, 6)).astype(np.float32),
        "remember_y": rng.integers(0, 10, (n, R)),
    }
    return x, y, episodes


class Case:
    """One (method, trainer, strategy): builds, fits epochs [start, stop)."""

    def __init__(self, method, trainer, strategy, checkpoint=None):
        self.trainer_kind, self.strategy = trainer, strategy
        self.checkpoint, self.saved = checkpoint, None
        make, self.counter, self.allowed = METHODS[method]
        self.classifier = sm.mlp(strategy, seed=0)
        self.trainer = self.classifier
        if trainer in ("asb", "meta_asb"):
            cls = MetaASB if trainer == "meta_asb" else ASB
            with strategy.scope():
                self.trainer = cls(self.classifier, 0.1, seed=2)
                self.trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
        with strategy.scope():  # slots exist before a restore
            self.trainer.optimizer.build(self.trainer.trainable_variables)
        self.method = make(trainer)
        self.before, self.after, self.history = [], [], []
        self.x, self.y, self.episodes = _data()

    def batches(self, start, stop):
        first, last = start * STEPS, stop * STEPS
        if self.trainer_kind in ("asb", "meta_asb"):
            episodes = {k: v[first:last] for k, v in self.episodes.items()}
            data = tf.data.Dataset.from_tensor_slices(episodes)
            return episode_batches(data, self.strategy.num_replicas_in_sync)
        x = self.x[first * BATCH : last * BATCH]
        y = self.y[first * BATCH : last * BATCH]
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)

    def _fit(self, start, stop, initial_epoch):
        callbacks = [Snapshot(self.before), self.method, Snapshot(self.after)]
        callbacks.append(SaveHalfway(self))
        history = self.trainer.fit(
            self.batches(start, stop),
            epochs=initial_epoch + (stop - start),
            initial_epoch=initial_epoch,
            steps_per_epoch=STEPS,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
        )
        self.history.append(history.history)

    def run(self, start=0, stop=EPOCHS):
        if self.trainer_kind != "continual":
            self._fit(start, stop, start)
            return self
        self.method.set_model(self.trainer)
        for task in range(start, stop):
            self.method.on_task_begin(task)
            self._fit(task, task + 1, 0)
            self.before.append(
                (("task_end", task), sm.weights(self.classifier))
            )
            self.method.on_task_end(task)
            self.after.append((("task_end", task), sm.weights(self.classifier)))
            if task == 0:
                self.save()
        return self

    def save(self):
        if self.checkpoint is not None and self.saved is None:
            self.saved = tf.train.Checkpoint(**self.state()).save(
                self.checkpoint
            )

    def state(self):
        """Everything a resumed run must restore."""
        return {
            "model": self.classifier,
            "optimizer": self.trainer.optimizer,
            # Seed-generator states (ASB's zap draws) too.
            "variables": list(self.trainer.variables),
            "method": self.method.checkpoint_items(),
        }

    def final(self):
        values = sm.weights(self.classifier)
        values.update(
            {
                f"optimizer/{i}": v.numpy()
                for i, v in enumerate(self.trainer.optimizer.variables)
            }
        )
        values.update(
            {f"counter/{k}": v for k, v in self.method.counters().items()}
        )
        return values


def _strategy(replicas):
    return sm.mirrored() if replicas == 2 else tf.distribute.get_strategy()


def _changed(before, after):
    return {p for p in before if not np.array_equal(before[p], after[p])}


@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_acts_on_trainer(method, trainer, replicas, tmp_path):
    strategy = _strategy(replicas)
    case = Case(method, trainer, strategy, str(tmp_path / "ckpt")).run()
    assert case.method.target is case.classifier
    assert case.method.counters()[case.counter] > 0
    key = f"method/{case.method.name}/{case.counter}"
    logged = case.history[-1][key][-1]
    if trainer != "continual":  # there, task-end actions follow the fit
        assert logged == case.method.counters()[case.counter]
    assert logged > 0 or trainer == "continual"
    actions = 0
    for (event, before), (same, after) in zip(case.before, case.after):
        assert event == same
        changed = _changed(before, after)
        assert changed <= case.allowed, (event, changed - case.allowed)
        actions += bool(changed)
    assert actions > 0
    if replicas == 2:
        sm.replicas_agree(
            strategy,
            case.classifier.weights
            + case.trainer.optimizer.variables
            + tf.nest.flatten(list(case.method.checkpoint_items().values())),
        )
    # Resume from the checkpoint taken halfway: bit-identical to the whole run.
    resumed = Case(method, trainer, strategy)
    resumed.method.set_model(resumed.trainer)
    tf.train.Checkpoint(**resumed.state()).restore(case.saved)
    resumed.run(1, EPOCHS)
    expected = case.final()
    for name, value in resumed.final().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_counters_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    for name in sorted(METHODS):
        case = Case(name, "fit", tf.distribute.get_strategy())
        board = keras.callbacks.TensorBoard(str(tmp_path / name))
        case.trainer.fit(
            case.batches(0, 1),
            epochs=1,
            callbacks=[case.method, board],
            verbose=0,
        )
        events = event_accumulator.EventAccumulator(
            str(tmp_path / name / "train"),
            size_guidance={event_accumulator.TENSORS: 0},
        )
        events.Reload()
        tag = f"epoch_method/{case.method.name}/{case.counter}"
        assert tag in events.Tags()["tensors"], (name, events.Tags())


def test_methods_share_the_base():
    for make, _, _ in METHODS.values():
        assert isinstance(make("fit"), base.Method)
