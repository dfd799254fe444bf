"""The `--strategy` flag: which tf.distribute strategy a run uses."""

import functools
import os

import tensorflow as tf

from zapkeras import multi_worker
from zapkeras.errors import UsageError

STRATEGIES = ("auto", "one", "mirrored", "multi_worker")
CPU_DEVICES_VARIABLE = "ZAPKERAS_CPU_DEVICES"


def split_cpu():
    """Splits the CPU into $ZAPKERAS_CPU_DEVICES logical devices, if set.

    With no GPU, `--strategy=mirrored` then runs that many replicas on one
    CPU: the real cross-replica code paths, for checking a multi-GPU run on
    a laptop. Must run before TensorFlow initialises its devices.
    """
    value = os.environ.get(CPU_DEVICES_VARIABLE)
    if not value:
        return
    if not value.isdigit() or int(value) < 1:
        raise UsageError(
            f"${CPU_DEVICES_VARIABLE} = {value!r}; set it to a whole number "
            "of logical CPU devices ≥ 1 (e.g. 2), or unset it."
        )
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(value)
    )


def make_strategy(name):
    """Returns the tf.distribute strategy named by `--strategy`.

    auto: MirroredStrategy over all GPUs when more than one is visible, else
    the default strategy. one: a single device (first GPU, else CPU).
    mirrored: MirroredStrategy over all GPUs, or over every logical CPU device
    when there is no GPU (how tests exercise it). multi_worker:
    MultiWorkerMirroredStrategy over the cluster in $TF_CONFIG.
    """
    if name == "multi_worker":
        return multi_worker.strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "one":
        device = gpus[0].name if gpus else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return mirrored(tuple(d.name for d in devices))
    raise UsageError(
        f"--strategy={name!r} is not a strategy; use one of "
        f"{', '.join(STRATEGIES)}."
    )


@functools.lru_cache(maxsize=None)
def mirrored(devices):
    """One MirroredStrategy per device tuple for the whole process.

    Two MirroredStrategy instances over the same devices in one process
    reuse collective instance keys, and the second one's all-reduces abort
    with "Shape mismatch in the collective instance"
    (tensorflow/tensorflow#62790); sharing the instance avoids it.
    """
    return tf.distribute.MirroredStrategy(list(devices))
