"""Epoch checkpoints that let a rerun resume where an interrupted one stopped.

tf.train.CheckpointManager writes the checkpoint files before it updates its
index, so a crash during a save leaves the previous checkpoint usable. Model
weights and random-generator states, optimizer slots and the epoch counter
are saved together; data order is a function of (seed, epoch).
"""

import math
import os

import keras
import tensorflow as tf

from zapkeras.errors import UsageError


def latest(output_dir):
    """The newest checkpoint a run wrote under OUTPUT_DIR/checkpoints,
    relative to `output_dir` (e.g. checkpoints/iid/pretrain/ckpt-2, or a
    transfer's checkpoints/iid/transfer/sequential.json), or None."""
    found = []
    for folder, _, names in os.walk(os.path.join(output_dir, "checkpoints")):
        for name in names:
            path = os.path.join(folder, name)
            if name == "checkpoint":  # CheckpointManager's index
                target = tf.train.latest_checkpoint(folder)
            elif name.endswith(".json"):  # written atomically
                target = path
            else:
                continue
            try:
                if target:
                    found.append((os.path.getmtime(path), target))
            except OSError:  # removed meanwhile
                pass
    if not found:
        return None
    newest = os.path.abspath(max(found)[1])
    return os.path.relpath(newest, os.path.abspath(output_dir))


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves (model, optimizer, epoch) after every epoch; restores on demand.

    `methods`: zapkeras methods whose `checkpoint_items()` are saved too
    (their state must exist: `set_model` them on `model` first).
    """

    def __init__(self, directory, model, max_to_keep=2, methods=()):
        super().__init__()
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        # model.variables as well: Keras' object tracking leaves out the
        # states of SeedGenerators (zap draws, dropout), and a resumed run
        # must draw what the uninterrupted one would have.
        self._checkpoint = tf.train.Checkpoint(
            model=model,
            variables=list(model.variables),
            optimizer=model.optimizer,
            epoch=self._epoch,
            methods={
                f"{i}_{method.name}": method.checkpoint_items()
                for i, method in enumerate(methods)
            },
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, directory, max_to_keep=max_to_keep
        )

    def restore(self):
        """Restores the latest checkpoint; returns the epoch to start from."""
        if self._manager.latest_checkpoint is None:
            return 0
        self._checkpoint.restore(self._manager.latest_checkpoint)
        return int(self._epoch.numpy())

    def on_epoch_end(self, epoch, logs=None):
        self._epoch.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops a run whose loss turned NaN or infinite, naming the step.

    Raised as a UsageError (exit status 2) before the epoch's checkpoint is
    written, so the last checkpoint on disk is the last good one; put it
    before `EpochCheckpoint` in the callback list.
    """

    def __init__(self, phase):
        super().__init__()
        self._phase = phase

    def _check(self, logs, where):
        """`where()` names the place; called only when a loss is bad."""
        bad = {
            k: v
            for k, v in (logs or {}).items()
            if "loss" in k and not math.isfinite(float(v))
        }
        if bad:
            raise UsageError(
                f"{self._phase}: {', '.join(bad)} became non-finite at "
                f"{where()}"
                "; the learning rate is probably too high for this setting. "
                "Lower it (e.g. by 10×) and rerun the same command: it "
                "resumes from the last good checkpoint."
            )

    def on_train_batch_end(self, batch, logs=None):
        self._check(
            logs, lambda: f"step {int(self.model.optimizer.iterations)}"
        )

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, lambda: f"the end of epoch {epoch + 1}")
