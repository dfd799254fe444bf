"""Sequential transfer (frati2024 Alg. 2): the compiled probe equals a plain
eager loop, the body stays bit-identical, the head starts Kaiming-normal
with zero bias, and accuracies are computed per class."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras import data as data_lib
from zapkeras.outputs import tensorboard
from zapkeras.protocols import transfer
from zapkeras.runner import RunContext


def test_per_class_accuracy_is_macro_in_order():
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    acc = transfer._per_class_accuracy(preds, labels, np.array([2, 0, 1]))
    np.testing.assert_allclose(acc, [1.0, 0.5, 2 / 3])


def test_eval_points_first_every_and_last():
    assert transfer._eval_points(10, 3) == [1, 3, 6, 9, 10]
    assert transfer._eval_points(1, 50) == [1]


def test_reset_gives_kaiming_head_zero_bias_fresh_optimizer():
    probe = transfer._LinearProbe(2048, 300, keras.optimizers.Adam)
    probe.train(np.ones((3, 2048), np.float32), np.array([1, 2, 3], np.int32))
    probe.reset(0.01, seed=5)
    kernel = probe.head.kernel.numpy()
    assert abs(kernel.std() / np.sqrt(2 / 2048) - 1) < 0.02
    assert abs(kernel.mean()) < 1e-3
    assert not probe.head.bias.numpy().any()
    assert int(probe.optimizer.iterations.numpy()) == 0
    assert float(probe.optimizer.learning_rate.numpy()) == pytest.approx(0.01)


def test_compiled_probe_matches_eager_reference_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 16)).astype(np.float32)
    y = rng.integers(0, 5, size=12).astype(np.int32)
    probe = transfer._LinearProbe(16, 5, keras.optimizers.Adam)
    probe.reset(0.05, seed=1)
    head = keras.layers.Dense(5)
    head.build((None, 16))
    head.set_weights(probe.head.get_weights())
    opt = keras.optimizers.Adam(0.05)
    for t in range(12):  # one example per step, as the reference does
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                y[t : t + 1], head(x[t : t + 1]), from_logits=True
            )
        grads = tape.gradient(loss, head.trainable_variables)
        opt.apply_gradients(zip(grads, head.trainable_variables))
    probe.train(x[:7], y[:7])
    probe.train(x[7:], y[7:])
    for got, want in zip(probe.head.get_weights(), head.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _tiny_model(num_classes):
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(3, 3, name="conv0")(inputs)
    x = keras.layers.Flatten(name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs)


def test_linear_probing_leaves_the_body_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    pool = data_lib.LabeledImages(
        images=rng.random((8 * 6, 4, 4, 1)).astype(np.float32),
        labels=np.repeat(np.arange(8), 6).astype(np.int32),
        class_names=tuple(str(i) for i in range(8)),
    )
    model = _tiny_model(5)
    before = [w.copy() for w in model.get_weights()]
    context = RunContext(
        seed=0,
        strategy=tf.distribute.get_strategy(),
        output_dir=str(tmp_path),
        condition="",
        writer=tensorboard.Writer(str(tmp_path / "tb")),
    )
    result = transfer.sequential_transfer(
        model,
        pool,
        context,
        learning_rates=(0.01, 0.001),
        runs=2,
        classes=5,
        train_per_class=4,
        eval_every=2,
    )
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert result["best_lr"] in (0.01, 0.001)
    assert set(result["by_lr"]) == {"0.01", "0.001"}
    curves = tmp_path / "curves" / "transfer_sequential.json"
    assert curves.exists()
