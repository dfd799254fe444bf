"""What a person watching the terminal sees: progress lines and tables."""

import re
import sys
import time

import keras

# "pretrain[iid] epoch 2/3", "transfer/sequential[iid] lr 0.01 run 1/2",
# "continual[permuted] task 3/20": a progress line up to its count.
_PROGRESS = re.compile(r"\S+\[[^\]\n]*\][^\n]*? \d+/\d+(?=  |\n|$)")
_last = []


def say(message):
    progress = _PROGRESS.match(message)
    if progress:
        _last[:] = [progress[0]]
    print(message, file=sys.stdout, flush=True)


def last_progress():
    """The last progress line said, up to its count, or None."""
    return _last[0] if _last else None


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch: metrics, validation and wall time."""

    def __init__(self, label, epochs):
        super().__init__()
        self._label = label
        self._epochs = epochs
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = "  ".join(
            f"{k} {v:.4f}" for k, v in sorted((logs or {}).items())
        )
        seconds = time.perf_counter() - self._start
        say(
            f"{self._label} epoch {epoch + 1}/{self._epochs}  {metrics}  "
            f"({seconds:.1f}s)"
        )


def table(header, rows):
    """Formats rows of strings as an aligned plain-text table."""
    widths = [
        max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))
    ]

    def line(row):
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
