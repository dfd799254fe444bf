"""TorchAdam (docs/reference_codes.md §1.13): PyTorch's Adam formulas,
written out here in NumPy, to ~1e-6; not Keras' Adam; Adam's slots; gin,
Keras serialization, ASB / Meta-ASB (one and two replicas) and an epoch
checkpoint resumed exactly."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
import zapkeras.gin_imports  # noqa: F401  (registers TorchAdam)
from tests.methods import step_methods
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.methods import resets
from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import MetaASB
from zapkeras.methods.asb import episode_batches
from zapkeras.optimizers import TorchAdam
from zapkeras.outputs import checkpoints
from zapkeras.protocols import pretrain


def torch_adam(w, grads, lr, eps=1e-8, wd=0.0, amsgrad=False, b1=0.9, b2=0.999):
    """torch.optim.Adam (AdamW when wd > 0), in float64."""
    w = w.astype(np.float64)
    m, v, v_max = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        w = w * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        v_max = np.maximum(v_max, v)
        v_hat = (v_max if amsgrad else v) / (1 - b2**t)
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v_hat) + eps)
    return w


def _problem(steps=6):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    # Gradients from 1e-7 to 1: where ε matters and where it does not.
    grads = [
        (rng.normal(size=w.shape) * 10.0 ** rng.uniform(-7, 0, w.shape)).astype(
            np.float32
        )
        for _ in range(steps)
    ]
    return w, grads


def _run(optimizer, w, grads):
    variable = keras.Variable(w)
    for g in grads:
        optimizer.apply_gradients([(tf.constant(g), variable)])
    return variable.numpy()


@pytest.mark.parametrize(
    "options",
    [{}, {"amsgrad": True}, {"weight_decay": 0.1}, {"epsilon": 1e-3}],
    ids=["adam", "amsgrad", "adamw", "large_eps"],
)
def test_torch_adam_is_pytorchs_update(options):
    w, grads = _problem()
    got = _run(TorchAdam(0.01, **options), w, grads)
    want = torch_adam(
        w,
        grads,
        0.01,
        eps=options.get("epsilon", 1e-8),
        wd=options.get("weight_decay", 0.0),
        amsgrad=options.get("amsgrad", False),
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    keras_adam = _run(keras.optimizers.Adam(0.01, **options), w, grads)
    assert np.abs(keras_adam - want).max() > 1e-5


def test_defaults_slots_and_resets_are_adams():
    optimizer = TorchAdam()
    assert (optimizer.epsilon, optimizer.amsgrad) == (1e-8, False)
    variable = keras.Variable(np.ones((2, 3), np.float32), name="kernel")
    optimizer.apply_gradients([(tf.ones((2, 3)), variable)])
    slots = resets.optimizer_slots(optimizer, variable)
    assert sorted(s.name.rsplit("_", 1)[-1] for s in slots) == [
        "momentum",
        "velocity",
    ]
    resets.reset_slots(optimizer, variable, [True, False, False])
    for slot in slots:
        assert not slot.numpy()[:, 0].any() and slot.numpy()[:, 1:].all()


def test_settings_are_checked_and_serialization_round_trips():
    with pytest.raises(UsageError, match=r"TorchAdam\.beta_2 = 1\.0"):
        TorchAdam(beta_2=1.0)
    with pytest.raises(UsageError, match=r"TorchAdam\.learning_rate"):
        TorchAdam(learning_rate=-1)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    optimizer = TorchAdam(schedule, epsilon=1e-6, amsgrad=True)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(again) is TorchAdam
    assert (again.epsilon, again.amsgrad) == (1e-6, True)
    assert float(again.learning_rate) == pytest.approx(0.1)


def test_gin_selects_it_for_a_protocol():
    gin.clear_config()
    try:
        gin.parse_config(
            "iid_pretraining.optimizer = @TorchAdam\n"
            "TorchAdam.epsilon = 1e-6\n"
            "TorchAdam.weight_decay = 0.1\n"
            "sequential_transfer.optimizer = @zapkeras.optimizers.TorchAdam"
        )
        optimizer = pretrain.IidPretraining().optimizer(learning_rate=1e-3)
    finally:
        gin.clear_config()
    assert isinstance(optimizer, TorchAdam) and optimizer.epsilon == 1e-6
    assert optimizer.weight_decay == 0.1


K, R, CLASSES = 3, 4, 4


def _convnet():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((5, 5, 1)),
            keras.layers.Conv2D(3, 3, name="conv"),
            models.InstanceNorm(name="norm"),
            keras.layers.Activation("tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(CLASSES, name="classifier"),
        ]
    )


def _episodes(count):
    rng = np.random.default_rng(0)
    return tf.data.Dataset.from_tensor_slices(
        {
            "inner_x": rng.normal(size=(count, K, 5, 5, 1)).astype("float32"),
            "inner_y": np.full((count, K), 2, np.int32),
            "remember_x": rng.normal(size=(count, R, 5, 5, 1)).astype(
                "float32"
            ),
            "remember_y": rng.integers(0, CLASSES, (count, R)).astype(np.int32),
        }
    )


def _pretrain(method, optimizer, episodes, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = _convnet()
        wrapper = method(model, 0.3, zap=False)
        wrapper.compile(optimizer())
    replicas = strategy.num_replicas_in_sync
    wrapper.fit(
        episode_batches(_episodes(episodes), replicas),
        shuffle=False,
        verbose=0,
    )
    return [v.numpy() for v in model.weights]


@pytest.mark.parametrize("method", [ASB, MetaASB])
def test_asb_outer_steps_use_it(method):
    # At step 1 PyTorch's update is Keras' with ε·√(1 − β2), so equal
    # weights after one episode show the outer step is TorchAdam's own.
    eps = 1e-3
    torch = _pretrain(method, lambda: TorchAdam(1e-2, epsilon=eps), 1)
    equal = _pretrain(
        method, lambda: keras.optimizers.Adam(1e-2, epsilon=eps * 0.001**0.5), 1
    )
    for a, b in zip(torch, equal):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_two_replicas_update_as_one():
    def optimizer():
        return TorchAdam(1e-2, epsilon=1e-3)

    one = _pretrain(ASB, optimizer, 3)
    two = _pretrain(ASB, optimizer, 3, step_methods.mirrored())
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _fit_epochs(directory, first, last):
    keras.utils.set_random_seed(0)
    model = models.mlp(4, input_shape=(6,), width=8, depth=1)
    model.compile(
        optimizer=TorchAdam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.optimizer.build(model.trainable_variables)
    checkpoint = checkpoints.EpochCheckpoint(directory, model)
    assert checkpoint.restore() == first
    x, y = step_methods.data(n=32, classes=4)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=last,
        initial_epoch=first,
        shuffle=False,
        callbacks=[checkpoint],
        verbose=0,
    )
    return model


def test_an_epoch_checkpoint_resumes_exactly(tmp_path):
    whole = _fit_epochs(str(tmp_path / "whole"), 0, 3)
    _fit_epochs(str(tmp_path / "cut"), 0, 1)
    resumed = _fit_epochs(str(tmp_path / "cut"), 1, 3)
    assert int(resumed.optimizer.iterations) == 12
    for a, b in zip(
        whole.weights + whole.optimizer.variables,
        resumed.weights + resumed.optimizer.variables,
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
