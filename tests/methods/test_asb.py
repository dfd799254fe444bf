"""ASB and Meta-ASB (frati2024 Alg. 1): exactly K inner SGD steps then one
outer step, zaps touch one class column, the Meta-ASB update is the true
second-order meta-gradient, and MirroredStrategy changes nothing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods
from zapkeras.errors import UsageError
from zapkeras.methods import resets
from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import MetaASB
from zapkeras.methods.asb import episode_batches
from zapkeras.models import InstanceNorm
from zapkeras.models import layers

K, R, CLASSES, CLS = 3, 4, 4, 2


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                5, "tanh", bias_initializer="random_normal", name="hidden"
            ),
            keras.layers.Dense(
                CLASSES, bias_initializer="random_normal", name="classifier"
            ),
        ]
    )


def _convnet(norm=lambda: InstanceNorm(name="norm")):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((5, 5, 1)),
            keras.layers.Conv2D(
                3, 3, bias_initializer="random_normal", name="conv"
            ),
            norm(),
            keras.layers.Activation("tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(
                CLASSES, bias_initializer="random_normal", name="classifier"
            ),
        ]
    )


def _bn_convnet():
    """VGG-16's BatchNorm (synchronised: exact to second order)."""
    return _convnet(lambda: layers.batch_norm("norm"))


# Keras norms whose statistics stop a gradient: first order only. Measured
# with the finite-difference test below: meta-gradients off by 26 % (BN),
# 5e-6 relative (LayerNorm) and 100 % (GroupNorm, ~0 for −0.34).
FIRST_ORDER_ONLY = {
    "batch_norm": lambda: keras.layers.BatchNormalization(name="norm"),
    "layer_norm": lambda: keras.layers.LayerNormalization(name="norm"),
    "group_norm": lambda: keras.layers.GroupNormalization(3, name="norm"),
}


def _adam():
    # A conv bias before InstanceNorm has a zero gradient (float noise),
    # which Adam's default epsilon would blow up to steps of ±lr.
    return keras.optimizers.Adam(1e-2, epsilon=1e-3)


def _episodes(model, count=1, seed=0):
    """`count` episodes (class CLS inner, random remember set) as numpy."""
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    dtype = keras.config.floatx()
    return {
        "inner_x": rng.normal(size=(count, K) + shape).astype(dtype),
        "inner_y": np.full((count, K), CLS, np.int32),
        "remember_x": rng.normal(size=(count, R) + shape).astype(dtype),
        "remember_y": rng.integers(0, CLASSES, (count, R)).astype(np.int32),
    }


def _fit(wrapper, episodes, replicas=1):
    data = tf.data.Dataset.from_tensor_slices(episodes)
    history = wrapper.fit(
        episode_batches(data, replicas), shuffle=False, verbose=0
    )
    return {k: v[-1] for k, v in history.history.items()}


def _ce(model, params, x, y):
    state = [v.value for v in model.non_trainable_variables]
    logits, _ = model.stateless_call(params, state, x, training=True)
    return keras.ops.mean(
        keras.losses.sparse_categorical_crossentropy(y, logits, True)
    )


def _adapted(model, params, episode, lr):
    """θ_K: K single-example SGD steps from `params` (Alg. 1, 10–13)."""
    for i in range(K):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = _ce(model, params, episode["inner_x"][0, i : i + 1],
                       episode["inner_y"][0, i : i + 1])  # fmt: skip
        grads = tape.gradient(loss, params)
        params = [p - lr * g for p, g in zip(params, grads)]
    return params


def _meta_batch(episode):
    return [
        np.concatenate([episode[f"inner_{k}"][0], episode[f"remember_{k}"][0]])
        for k in "xy"
    ]


def _weights(model):
    return [v.numpy() for v in model.weights]


@pytest.mark.parametrize("build", [_mlp, _convnet])
def test_asb_is_k_sgd_steps_then_one_outer_step(build):
    model, reference = build(), build()
    episode = _episodes(model)
    asb = ASB(model, 0.3, zap=False)
    asb.compile(_adam())
    logs = _fit(asb, episode)
    theta0 = [tf.convert_to_tensor(v) for v in reference.trainable_variables]
    theta = _adapted(reference, theta0, episode, 0.3)
    x, y = _meta_batch(episode)
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = _ce(reference, theta, x, y)
    grads = tape.gradient(loss, theta)
    for variable, value in zip(reference.trainable_variables, theta):
        variable.assign(value)
    _adam().apply_gradients(zip(grads, reference.trainable_variables))
    for got, want in zip(_weights(model), _weights(reference)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(_weights(model)[0], _weights(build())[0])
    np.testing.assert_allclose(logs["outer_loss"], float(loss), rtol=1e-5)


@pytest.mark.parametrize("reset_bias", [True, False])
def test_zap_changes_only_the_episode_class(reset_bias):
    model = _mlp()
    before = _weights(model)
    asb = ASB(model, 0.0, zap_reset_bias=reset_bias, seed=1)
    asb.compile(keras.optimizers.SGD(0.0))
    _fit(asb, _episodes(model))
    head = model.get_layer("classifier")
    kernel = head.kernel.numpy()
    changed = np.any(kernel != before[2], axis=0)
    np.testing.assert_array_equal(np.flatnonzero(changed), [CLS])
    bias = before[3].copy()
    if reset_bias:
        bias[CLS] = 0.0
    np.testing.assert_array_equal(head.bias.numpy(), bias)
    for got, want in zip(_weights(model)[:2], before[:2]):
        np.testing.assert_array_equal(got, want)
    _fit(asb, _episodes(model))
    assert not np.array_equal(head.kernel.numpy()[:, CLS], kernel[:, CLS])


def test_zap_reset_optimizer_zeroes_the_class_moments():
    model = _mlp()
    asb = ASB(model, 0.0, zap_reset_optimizer=True, seed=1)
    beta = 0.9
    asb.compile(keras.optimizers.Adam(0.0, beta_1=beta))
    head = model.get_layer("classifier")
    _fit(asb, _episodes(model))
    momentum = [
        s for s in resets.optimizer_slots(asb.optimizer, head.kernel)
        if s.path.endswith("momentum")
    ][0]  # fmt: skip
    previous = momentum.numpy()
    episode = _episodes(model, seed=1)
    _fit(asb, episode)
    # Both rates are 0, so the outer gradient is taken at today's weights.
    with tf.GradientTape() as tape:
        loss = _ce(model, model.trainable_variables, *_meta_batch(episode))
    grad = tape.gradient(loss, head.kernel).numpy()
    want = beta * previous + (1 - beta) * grad
    want[:, CLS] = (1 - beta) * grad[:, CLS]
    np.testing.assert_allclose(momentum.numpy(), want, atol=1e-6)


def test_inner_variables_restrict_the_inner_loop():
    model = _mlp()
    before = _weights(model)
    head = model.get_layer("classifier")
    for chosen in ([head.kernel, head.bias], lambda v: "classifier" in v.path):
        asb = ASB(model, 0.5, zap=False, inner_variables=chosen)
        asb.compile(keras.optimizers.SGD(0.0))
        _fit(asb, _episodes(model))
        after = _weights(model)
        for got, want in zip(after[:2], before[:2]):
            np.testing.assert_array_equal(got, want)
        assert not np.allclose(after[2], before[2])
    with pytest.raises(UsageError, match="inner_variables"):
        ASB(model, 0.5, inner_variables=[keras.Variable(1.0)])
    with pytest.raises(UsageError, match="inner_variables"):
        ASB(model, 0.5, inner_variables=lambda v: False)


@pytest.fixture
def float64():
    # The dtype policy is cached once a layer exists, so set both.
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


@pytest.mark.parametrize("build", [_mlp, _convnet, _bn_convnet])
def test_meta_gradient_matches_finite_differences(build, float64):
    lr = 0.5
    model = build()
    assert model.weights[0].dtype == "float64"
    theta0 = [v.numpy() for v in model.trainable_variables]
    episode = _episodes(model)
    x, y = _meta_batch(episode)

    def meta_loss(params):
        params = [tf.constant(p) for p in params]
        return float(_ce(model, _adapted(model, params, episode, lr), x, y))

    def outer_gradient(first_order):
        for variable, value in zip(model.trainable_variables, theta0):
            variable.assign(value)
        meta = MetaASB(model, lr, zap=False, first_order=first_order)
        meta.compile(keras.optimizers.SGD(1.0))
        _fit(meta, episode)
        return [
            t - v.numpy() for t, v in zip(theta0, model.trainable_variables)
        ]

    grads = outer_gradient(first_order=False)
    rng = np.random.default_rng(0)
    eps = 1e-5
    for _ in range(3):
        direction = [rng.normal(size=t.shape) for t in theta0]
        plus = meta_loss([t + eps * d for t, d in zip(theta0, direction)])
        minus = meta_loss([t - eps * d for t, d in zip(theta0, direction)])
        analytic = sum(np.sum(g * d) for g, d in zip(grads, direction))
        np.testing.assert_allclose(
            analytic, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-9
        )
    # FOMAML: the gradient at θ_K, applied to θ_0; not the meta-gradient.
    first = outer_gradient(first_order=True)
    theta = _adapted(model, [tf.constant(t) for t in theta0], episode, lr)
    with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = _ce(model, theta, x, y)
    for got, want in zip(first, tape.gradient(loss, theta)):
        np.testing.assert_allclose(got, want, atol=1e-10)
    gap = max(np.max(np.abs(f - g)) for f, g in zip(first, grads))
    assert gap > 1e-3


@pytest.mark.parametrize("norm", FIRST_ORDER_ONLY, ids=str)
def test_meta_asb_refuses_norms_exact_to_first_order_only(norm):
    model = _convnet(FIRST_ORDER_ONLY[norm])
    with pytest.raises(UsageError, match=r"\['norm'\].*first_order=True"):
        MetaASB(model, 0.1)
    assert MetaASB(model, 0.1, first_order=True).first_order
    ASB(model, 0.1)  # first order: exact


@pytest.mark.parametrize("method", [ASB, MetaASB])
def test_mirrored_run_matches_one_device(method):
    episodes = _episodes(_convnet(), count=3)
    results = []
    for strategy in (
        tf.distribute.get_strategy(),
        step_methods.mirrored(),
    ):
        with strategy.scope():
            model = _convnet()
            wrapper = method(model, 0.3, seed=5)
            wrapper.compile(_adam())
        logs = _fit(wrapper, episodes, strategy.num_replicas_in_sync)
        results.append((_weights(model), logs))
    step_methods.replicas_agree(
        strategy, wrapper.variables + wrapper.optimizer.variables
    )
    (one, one_logs), (two, two_logs) = results
    for got, want in zip(two, one):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert set(two_logs) == {"inner_loss", "outer_loss", "outer_accuracy"}
    for name, value in one_logs.items():
        np.testing.assert_allclose(two_logs[name], value, rtol=1e-5)


def test_usage_errors():
    model = _mlp()
    with pytest.raises(UsageError, match="inner_learning_rate"):
        ASB(model, -0.1)
    headless = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(UsageError, match="classifier"):
        MetaASB(headless, 0.1)
    asb = ASB(model, 0.1)
    with pytest.raises(UsageError, match="loss"):
        asb.compile("adam", loss="mse")
    asb.compile("adam")
    data = tf.data.Dataset.from_tensor_slices(_episodes(model, count=2))
    for wrong in (data, data.batch(2), episode_batches(data, 2)):
        with pytest.raises(UsageError, match="episode_batches"):
            asb.fit(wrong, shuffle=False, verbose=0)
    with pytest.raises(UsageError, match="num_replicas"):
        episode_batches(data, 0)
