"""Shared set-up of the method tests: tiny models, fixed
data, training with callbacks, replica checks."""

import keras
import numpy as np
import tensorflow as tf

from zapkeras import distribute
from zapkeras import models

MIRRORED = ("/cpu:0", "/cpu:1")


def mirrored():
    return distribute.mirrored(MIRRORED)


def data(n=64, shape=(6,), classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    return x, (np.arange(n) % classes).astype(np.int64)


def mlp(strategy=None, seed=0, learning_rate=1e-2, **kwargs):
    """A compiled 6 → 8 → 8 → 10 MLP (Adam), built under `strategy`."""
    kwargs = {"width": 8, "depth": 2, **kwargs}
    return compiled(
        lambda: models.mlp(10, input_shape=(6,), **kwargs),
        strategy,
        seed,
        learning_rate,
    )


def convnet(strategy=None, seed=0, learning_rate=1e-2):
    """A compiled frati_convnet of width 4 on 28×28×1 images."""
    return compiled(
        lambda: models.frati_convnet(5, width=4), strategy, seed, learning_rate
    )


def compiled(build, strategy=None, seed=0, learning_rate=1e-2):
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build()
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    return model


def step_to(method, step):
    """Runs `method`'s after-step hook as after optimizer step `step`."""
    method.steps.assign(step - 1)
    method.on_train_batch_end(step - 1)


def fit(model, callbacks, x, y, batch_size=16, epochs=1):
    return model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
    )


def weights(model):
    return {v.path: v.numpy().copy() for v in model.weights}


def slots(model):
    return {v.name: v.numpy().copy() for v in model.optimizer.variables}


def replicas_agree(strategy, variables):
    for variable in variables:
        value = getattr(variable, "value", variable)
        first, second = strategy.experimental_local_results(value)
        np.testing.assert_array_equal(first.numpy(), second.numpy())


def one_vs_two_replicas(build, make_callback, x, y):
    """Trains the same model with 1 and 2 replicas; returns both models and
    callbacks after checking replica agreement of weights and slots."""
    results = []
    for strategy in (tf.distribute.get_strategy(), mirrored()):
        model = build(strategy)
        callback = make_callback()
        fit(model, [callback], x, y)
        results.append((model, callback))
    model, _ = results[1]
    replicas_agree(mirrored(), model.weights + model.optimizer.variables)
    return results
