"""TensorBoard output: namespaced tags on a global step (README "Outputs").

As `keras.callbacks.TensorBoard`, a log directory holds two runs, `train/`
and `validation/`, and a validation metric has its training metric's tag,
so TensorBoard overlays them. Keras' callback restarts its step at every
`fit()`, so successive phases would overlap; these writers take the step
explicitly. Method counters (fit-log keys `method/<name>/<counter>`) are
top-level tags whatever the phase.
"""

import os

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

RUNS = ("train", "validation")


class Writer:
    """The `train/` and `validation/` event writers of one log directory
    (each created when first written to)."""

    def __init__(self, logdir):
        self.logdir = logdir
        self._writers = {}

    def _writer(self, run):
        if run not in self._writers:
            path = os.path.join(self.logdir, run)
            self._writers[run] = tf.summary.create_file_writer(path)
        return self._writers[run]

    def scalars(self, prefix, values, step, run="train"):
        """`prefix/<name>` per value; `method/…` names stay top-level."""
        with self._writer(run).as_default(step=int(step)):
            for name, value in values.items():
                tag = name if name.startswith("method/") else f"{prefix}/{name}"
                tf.summary.scalar(tag, float(value))
        self._writer(run).flush()

    def fit_logs(self, prefix, logs, step, name="{}"):
        """A fit() logs dict: `val_<m>` to the validation run and the rest
        to the train run, both as `prefix/<name.format(m)>`."""
        runs = {"train": {}, "validation": {}}
        for key, value in (logs or {}).items():
            if key.startswith("method/"):
                runs["train"][key] = value
            elif key.startswith("val_"):
                runs["validation"][name.format(key[len("val_") :])] = value
            else:
                runs["train"][name.format(key)] = value
        for run, values in runs.items():
            if values:
                self.scalars(prefix, values, step, run)

    def text(self, tag, text, step=0):
        with self._writer("train").as_default(step=step):
            tf.summary.text(tag, text)
        self._writer("train").flush()

    def config(self, config_text):
        """The operative gin config as `config/operative_gin`, a Markdown
        code block (the text plugin renders Markdown; this shows it
        verbatim)."""
        lines = config_text.rstrip("\n").split("\n")
        self.text("config/operative_gin", "\n".join(f"    {x}" for x in lines))

    def hparams(self, values, metrics, step=0):
        """An HParams session in the train run: `values` {name: str, int,
        float or bool} and headline `metrics` {tag: number} (as scalars)."""
        with self._writer("train").as_default(step=step):
            hp.hparams(values)
            for tag, value in metrics.items():
                tf.summary.scalar(tag, float(value))
        self._writer("train").flush()

    def image(self, tag, png_bytes, step=0):
        image = tf.image.decode_png(png_bytes, channels=4)[None]
        with self._writer("train").as_default(step=step):
            tf.summary.image(tag, image)
        self._writer("train").flush()

    def close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class ScalarLogger(keras.callbacks.Callback):
    """Logs fit() metrics under `prefix/` at the optimizer's global step.

    Batch metrics every `every_n_steps` steps as `prefix/<m>`, epoch
    metrics at each epoch end as `prefix/epoch_<m>` (validation ones in the
    validation run). Values are the ones fit() already reduced across
    replicas.
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
            self._writer.fit_logs(self._prefix, logs, step)

    def on_epoch_end(self, epoch, logs=None):
        self._writer.fit_logs(self._prefix, logs, self._step(), "epoch_{}")
