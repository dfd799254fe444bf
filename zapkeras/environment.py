"""The process environment of zapkeras' commands, set by the commands only.

A library import of zapkeras changes no environment variable. A command
(`python -m zapkeras.<command>`, `zapkeras-train`, `zapkeras-tune`, or a
study pipeline, `python -m pipelines.<study>`) calls `prepare` before
TensorFlow loads; Python imports the package `zapkeras` before the
command's own module, so zapkeras/__init__.py does it when `is_command`.

- KERAS_BACKEND=tensorflow: every method relies on tf.distribute and
  tf.function. A library user with another backend gets an ImportError.
- TF_CPP_MIN_LOG_LEVEL: TensorFlow's C++ start-up log is quieted unless
  the user set the variable below 2 or passed --verbosity
  (zapkeras/quiet.py).
- TF_ENABLE_ONEDNN_OPTS=1 on x86 (unless set): oneDNN's kernels make the
  convnet steps about 2x faster on x86 CPUs (docs/performance.md), but
  TensorFlow turns them on by default only on CPUs it deems suited (not,
  for instance, on AVX2-only AMD EPYC). Set it to 0 to turn them off.
"""

import os
import platform

from zapkeras import quiet

COMMANDS = ("zapkeras-train", "zapkeras-tune")


def is_command(argv):
    """True while Python starts a zapkeras command given `sys.argv`: `-m`
    while it locates `python -m <package>.<module>` (a module run with -m
    that imports zapkeras later sees its own path there), or a console
    script's path."""
    first = argv[0] if argv else ""
    return first == "-m" or os.path.basename(first) in COMMANDS


def check_backend():
    """ImportError unless Keras' backend is (or will be) TensorFlow."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise ImportError(
            f"zapkeras runs on Keras' TensorFlow backend, but KERAS_BACKEND="
            f"{backend!r}; unset it or set KERAS_BACKEND=tensorflow."
        )


def prepare():
    """Sets the variables above and quiets TensorFlow's import."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    if not os.environ.get(quiet.VARIABLE):  # TensorFlow reads it at run time
        os.environ[quiet.VARIABLE] = str(min(quiet.level(), 2))
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    quiet.install()
