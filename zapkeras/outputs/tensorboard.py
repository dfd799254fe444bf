"""TensorBoard output: namespaced tags on a global step (README "Outputs").

Keras' own TensorBoard callback restarts its step at every `fit()`, so
successive phases would overlap; these writers take the step explicitly.
"""

import keras
import tensorflow as tf


class Writer:
    """A TensorBoard event writer for one run directory."""

    def __init__(self, logdir):
        self.logdir = logdir
        self._writer = tf.summary.create_file_writer(logdir)

    def scalars(self, prefix, values, step):
        with self._writer.as_default(step=int(step)):
            for name, value in values.items():
                tf.summary.scalar(f"{prefix}/{name}", float(value))
        self._writer.flush()

    def text(self, tag, text, step=0):
        with self._writer.as_default(step=step):
            tf.summary.text(tag, text)
        self._writer.flush()

    def image(self, tag, png_bytes, step=0):
        image = tf.image.decode_png(png_bytes, channels=4)[None]
        with self._writer.as_default(step=step):
            tf.summary.image(tag, image)
        self._writer.flush()

    def close(self):
        self._writer.close()


class ScalarLogger(keras.callbacks.Callback):
    """Logs fit() metrics under `prefix/` at the optimizer's global step.

    Batch metrics every `every_n_steps` steps, epoch metrics (including
    validation) at each epoch end. Values are the ones fit() already reduced
    across replicas.
    """

    def __init__(self, writer, prefix, every_n_steps=10):
        super().__init__()
        self._writer = writer
        self._prefix = prefix
        self._every = every_n_steps

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if logs and step % self._every == 0:
            self._writer.scalars(self._prefix, logs, step)

    def on_epoch_end(self, epoch, logs=None):
        values = {f"epoch_{k}": v for k, v in (logs or {}).items()}
        values["epoch"] = epoch + 1
        self._writer.scalars(self._prefix, values, self._step())
