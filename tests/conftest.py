"""Test session set-up: two logical CPU devices, so MirroredStrategy tests
run real cross-device code paths on a CPU-only machine."""

from zapkeras import environment

environment.prepare()  # the commands' environment (oneDNN on x86, quiet log)

import tensorflow as tf  # noqa: E402  (after prepare: it reads the variables)

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu,
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

MIRRORED_DEVICES = ["/cpu:0", "/cpu:1"]
