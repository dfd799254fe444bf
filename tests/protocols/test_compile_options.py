"""jit_compile and precision (zapkeras/compile_options.py) on a CPU: XLA
and a mixed policy each run i.i.d. pretraining, ASB, Meta-ASB and a
permuted continual problem to results close to the float32 / no-XLA run;
'auto' follows the devices; variables, optimizer slots and resets stay
float32; the dtype policy is put back after a run.

Tolerances, on the trained model's float32 loss over the training images
after a few steps: XLA fuses and reorders float32 arithmetic (measured
≤ 1.1e-7 relative), so 1e-5 (XLA_RTOL); bfloat16 keeps 8 significant bits
(~0.4 % per rounding; measured 0.08–0.4 % on the loss), so 2 %
(MIXED_RTOL). Mixed precision runs as 'mixed_bfloat16' (ASB refuses
float16), except in the i.i.d. float16 check, which this CPU runs too.
The i.i.d. case uses a small convnet (conv, InstanceNorm), the others an
MLP, to keep XLA's compile times within the test budget.
"""

import functools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras import compile_options
from zapkeras.data import LabeledImages
from zapkeras.data import continual
from zapkeras.errors import UsageError
from zapkeras.losses import per_example_cross_entropy
from zapkeras.methods import zapping
from zapkeras.methods.redo import ReDo
from zapkeras.models import InstanceNorm
from zapkeras.models import mlp
from zapkeras.outputs import tensorboard
from zapkeras.protocols.base import Data
from zapkeras.protocols.base import RunContext
from zapkeras.protocols.continual import ContinualLearning
from zapkeras.protocols.pretrain import AsbPretraining
from zapkeras.protocols.pretrain import IidPretraining

XLA_RTOL = 1e-5
MIXED_RTOL = 0.02
CLASSES, SIDE = 4, 8
BF16 = "mixed_bfloat16"


def _images(per_class, seed):
    """Each class a fixed random pattern plus noise: learnable in a few
    steps."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(99).uniform(size=(CLASSES, SIDE, SIDE))
    labels = np.repeat(np.arange(CLASSES), per_class).astype(np.int32)
    noise = rng.normal(0, 0.3, size=(len(labels), SIDE, SIDE))
    images = (patterns[labels] + noise)[..., None].astype(np.float32)
    return LabeledImages(images, labels, tuple(map(str, range(CLASSES))))


TRAIN, VAL = _images(6, 0), _images(6, 1)  # one batch shape for XLA


def _convnet():
    inputs = keras.Input((SIDE, SIDE, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = InstanceNorm(name="norm")(x)
    x = keras.layers.Activation("relu", name="act")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(CLASSES, name="classifier")(x)
    return keras.Model(inputs, outputs)


def _mlp():
    return mlp(CLASSES, input_shape=(SIDE, SIDE, 1), width=8, depth=1)


def _loss(model):
    """The model's mean float32 cross-entropy on the training images."""
    logits = model(TRAIN.images, training=False)
    return float(np.mean(per_example_cross_entropy(TRAIN.labels, logits)))


def _run(protocol, out, build=_convnet, data=None):
    """(results, trained model) of `protocol` from seeded weights."""
    keras.utils.set_random_seed(0)
    model = build()
    context = RunContext(
        seed=0,
        strategy=tf.distribute.get_strategy(),
        output_dir=str(out),
        writer=tensorboard.Writer(os.path.join(str(out), "tensorboard")),
        build_model=build,
    )
    try:
        result = protocol(model, data or Data(train=TRAIN, val=VAL), context)
    finally:
        context.writer.close()
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    return result, model


IID = functools.partial(
    IidPretraining, epochs=2, batch_size=8, learning_rate=1e-2
)
# Without zaps for the XLA comparison: inside the compiled episode step a
# zap draws from XLA's random algorithm, another stream for the same seed.
ASB = functools.partial(
    AsbPretraining,
    episodes=4,
    episodes_per_epoch=2,
    inner_steps=3,
    remember=4,
    learning_rate=1e-2,
    # 0.1 leaves θ_K so specialised to one class that the all-class loss
    # (2.6) moves by 2 % in bfloat16; 0.03 keeps it near chance (1.33).
    inner_learning_rate=0.03,
    zap=False,
)
PERMUTED = functools.partial(
    continual.permuted_tasks, tasks=2, epochs_per_task=1
)
CONTINUAL = functools.partial(
    ContinualLearning,
    problem=PERMUTED,
    batch_size=8,
    probe_size=8,
    eval_batch_size=32,
    optimizer=keras.optimizers.Adam,
    learning_rate=1e-2,
)
CASES = {
    "iid": (IID, _convnet),
    "asb": (ASB, _mlp),
    "meta_asb": (functools.partial(ASB, meta=True), _mlp),
    "continual": (CONTINUAL, _mlp),
}


def _case(name, tmp_path, **options):
    protocol, build = CASES[name]
    data = Data(train=TRAIN, test=VAL) if name == "continual" else None
    return _run(protocol(**options), tmp_path, build, data)


@pytest.mark.parametrize("name", sorted(CASES))
def test_xla_and_mixed_precision_match_the_float32_run(name, tmp_path):
    _, plain = _case(name, tmp_path / "plain", jit_compile=False)
    _, xla = _case(name, tmp_path / "xla", jit_compile=True)
    _, mixed = _case(name, tmp_path / "mixed", precision=BF16)
    assert xla.jit_compile and not plain.jit_compile
    reference = _loss(plain)
    assert _loss(xla) == pytest.approx(reference, rel=XLA_RTOL)
    assert _loss(mixed) == pytest.approx(reference, rel=MIXED_RTOL)
    assert _loss(mixed) != reference  # the policy did change the compute
    assert {v.dtype for v in mixed.weights} == {"float32"}


def test_float16_is_loss_scaled_and_state_stays_float32(tmp_path):
    result, model = _run(IID(precision="mixed_float16"), tmp_path)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert {v.dtype for v in model.weights} == {"float32"}
    floats = {v.dtype for v in optimizer.variables if "float" in v.dtype}
    assert floats == {"float32"}  # Adam moments and the loss scale
    assert np.isfinite(result["val_loss"])


def test_a_reset_under_the_mixed_policy_writes_float32_values():
    def zapped(policy):
        keras.utils.set_random_seed(0)
        model = _convnet()
        with compile_options.precision(policy, model):
            layer = model.get_layer("classifier")
            zapping.zap(layer, [1], seed=keras.random.SeedGenerator(3))
        return model.get_layer("classifier").kernel.numpy()

    kernel = zapped(BF16)
    assert kernel.dtype == np.float32
    np.testing.assert_array_equal(kernel, zapped("float32"))
    rounded = kernel.astype(keras.backend.standardize_dtype("bfloat16"))
    assert np.any(rounded.astype(np.float32) != kernel)  # not 16-bit values


def test_redo_reads_activations_under_the_mixed_policy(tmp_path):
    redo = ReDo((3, "steps"), 10.0, seed=0)  # τ = 10: most units recycle
    result, model = _case(
        "continual", tmp_path, precision=BF16, callbacks=[redo]
    )
    assert result["counters_per_task"]["redo/recycled"][-1] > 0
    assert {v.dtype for v in model.weights} == {"float32"}


def test_the_policy_is_restored_after_an_error():
    model = _convnet()
    with pytest.raises(RuntimeError):
        with compile_options.precision(BF16, model):
            assert model(TRAIN.images[:2]).dtype == "bfloat16"
            raise RuntimeError("interrupted")
    assert keras.config.dtype_policy().name == "float32"
    assert model(TRAIN.images[:2]).dtype == "float32"


def test_auto_turns_xla_on_only_with_a_gpu_and_one_replica(monkeypatch):
    assert compile_options.jit_compile("auto") is False  # this CPU
    assert compile_options.jit_compile(True) is True
    gpus = {"GPU": ["/physical_device:GPU:0"]}
    monkeypatch.setattr(
        tf.config, "list_physical_devices", lambda kind=None: gpus.get(kind)
    )
    assert compile_options.jit_compile("auto") is True
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert compile_options.jit_compile("auto", two) is False


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: IidPretraining(jit_compile="yes"),
            "iid_pretraining.jit_compile = 'yes'; use 'auto'",
        ),
        (
            lambda: IidPretraining(precision="float16"),
            "iid_pretraining.precision = 'float16'; use 'float32', "
            "'mixed_bfloat16'",
        ),
        (
            lambda: AsbPretraining(precision="mixed_float16"),
            "asb_pretraining.precision = 'mixed_float16'; use 'float32' or "
            "'mixed_bfloat16'",
        ),
        (
            lambda: ContinualLearning(problem=PERMUTED, jit_compile=1),
            "continual_learning.jit_compile = 1",
        ),
    ],
)
def test_bad_values_name_the_setting_and_the_fix(make, message):
    with pytest.raises(UsageError) as error:
        make()
    assert message in str(error.value)


def test_asb_refuses_a_float16_classifier():
    from zapkeras.methods.asb import ASB as Wrapper

    model = _convnet()
    with compile_options.precision("mixed_float16", model):
        learner = Wrapper(model, 0.1, zap=False)
        with pytest.raises(UsageError, match="'mixed_bfloat16'"):
            learner.compile(optimizer="adam")
