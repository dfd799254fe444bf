"""The training protocols' compile options, resolved in one place.

- `jit_compile` (XLA): 'auto', True or False. 'auto' is on when a GPU is
  visible and the run has one replica, else off. Off on CPUs because on a
  2-core CPU XLA made every step that back-propagates through the
  convolutions slower (i.i.d. 1.3–1.5×, ASB 1.1–1.2×, Meta-ASB ~30×;
  docs/keras_notes.md §10); off under a multi-replica strategy as in
  Keras' own 'auto' (XLA under MirroredStrategy fails on logical CPU
  devices and is untested here on GPUs).
- `precision`: the Keras dtype policy of a protocol's run, 'float32',
  'mixed_bfloat16' or 'mixed_float16'. Under a mixed policy layers compute
  in 16 bits while their variables, hence optimizer slots, EMA copies and
  resets, stay float32; zapkeras' losses and the statistics of its
  normalisations and unit utilities are computed in float32, and Keras
  loss-scales float16 (`Model.compile` wraps the optimizer in a
  `LossScaleOptimizer`). See docs/performance.md "On GPUs".
"""

import contextlib

import keras
import tensorflow as tf

from zapkeras import compat
from zapkeras import settings

JitCompile = settings.OneOf(
    "auto",
    True,
    False,
    hint="use 'auto' (XLA on a single GPU, off on CPUs), True or False.",
)

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
Precision = settings.OneOf(
    *PRECISIONS,
    hint="use 'float32', 'mixed_bfloat16' or 'mixed_float16' (16-bit "
    "compute, float32 weights; float16 is loss-scaled).",
)
# ASB / Meta-ASB: their inner-loop gradients are not loss-scaled.
UNSCALED_PRECISIONS = PRECISIONS[:2]
UNSCALED_HINT = (
    "use 'float32' or 'mixed_bfloat16': the ASB / Meta-ASB inner loop's "
    "gradients are not loss-scaled and would underflow in float16 "
    "(bfloat16 has float32's exponent range)."
)
UnscaledPrecision = settings.OneOf(*UNSCALED_PRECISIONS, hint=UNSCALED_HINT)


def full_precision(x):
    """`x` in float32 if it is a 16-bit float tensor, else unchanged (so
    float64 tests keep their precision)."""
    if keras.backend.standardize_dtype(x.dtype) in ("float16", "bfloat16"):
        return keras.ops.cast(x, "float32")
    return x


def jit_compile(value, strategy=None, setting="jit_compile"):
    """The bool a `jit_compile` setting (`JitCompile`) stands for; 'auto'
    is True when a GPU is visible and `strategy` (None: the current one)
    has one replica."""
    value = JitCompile.apply(value, setting)
    if value != "auto":
        return value
    strategy = strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        return False
    return bool(tf.config.list_physical_devices("GPU"))


@contextlib.contextmanager
def precision(policy, model):
    """Runs the block under dtype policy `policy` (a `Precision`).

    The global policy (so models built in the block take it) and that of
    every float32-variable layer of `model` are set, and put back on exit,
    even on an error: later protocols (transfer) and runs in the process
    compute as before. Variables are untouched (a mixed policy's variable
    dtype is float32).
    """
    previous = keras.config.dtype_policy()
    layers = [
        layer
        for layer in compat.flatten_layers(model)
        if layer.dtype_policy.variable_dtype == "float32"
        and layer.dtype_policy.quantization_mode is None
        and layer.dtype_policy.name != policy
    ]
    saved = [layer.dtype_policy for layer in layers]
    keras.config.set_dtype_policy(policy)
    try:
        for layer in layers:
            layer.dtype_policy = policy
        yield
    finally:
        for layer, old in zip(layers, saved):
            layer.dtype_policy = old
        keras.config.set_dtype_policy(previous)
