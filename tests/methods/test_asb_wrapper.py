"""ASB and MetaASB behave as Keras models: `evaluate` and `predict` use the
wrapped classifier (exactly, also over uneven MirroredStrategy shares), and
`save` / `keras.models.load_model` restore a wrapper that trains on
bit-identically; the docs example runs."""

import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.methods import step_methods
from zapkeras.errors import UsageError
from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import MetaASB
from zapkeras.methods.asb import episode_batches

README = pathlib.Path(__file__).parents[2] / "README.md"
N, CLASSES = 13, 3
SETTINGS = (
    "inner_learning_rate",
    "zap",
    "zap_reset_bias",
    "zap_reset_optimizer",
    "first_order",
    "seed",
    "_inner_index",
)


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, "relu"),
            keras.layers.Dense(CLASSES, name="classifier"),
        ]
    )


def _data(weighted=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4)).astype("float32")
    y = rng.integers(0, CLASSES, N).astype("int64")
    return (
        (x, y, rng.uniform(0, 2, N).astype("float32")) if weighted else (x, y)
    )


def _expected(model, x, y, w=None):
    """Classifier CE and accuracy, (weighted) means over all examples."""
    logits = model(x).numpy().astype("float64")
    log_p = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    w = np.ones(len(y)) if w is None else w
    ce = -log_p[np.arange(len(y)), y]
    hits = np.argmax(logits, -1) == y
    return {
        "loss": np.sum(w * ce) / np.sum(w),
        "accuracy": np.sum(w * hits) / np.sum(w),
    }


def _episodes(count, seed):
    rng = np.random.default_rng(seed)
    return {
        "inner_x": rng.normal(size=(count, 3, 4)).astype("float32"),
        "inner_y": rng.integers(0, CLASSES, (count, 1)).repeat(3, 1),
        "remember_x": rng.normal(size=(count, 5, 4)).astype("float32"),
        "remember_y": rng.integers(0, CLASSES, (count, 5)),
    }


def _fit(wrapper, episodes, **kwargs):
    data = episode_batches(tf.data.Dataset.from_tensor_slices(episodes), 1)
    return wrapper.fit(data, shuffle=False, verbose=0, **kwargs).history


def _evaluate(wrapper, data, batch_size):
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
    return wrapper.evaluate(dataset, verbose=0, return_dict=True)


def _check_evaluate_and_predict(wrapper, model):
    """evaluate (batches of 5 and, weighted, of 4) and predict equal the
    classifier's numbers; returns the unweighted data."""
    x, y, w = _data(weighted=True)
    for data, batch_size in (((x, y), 5), ((x, y, w), 4)):
        got = _evaluate(wrapper, data, batch_size)
        assert set(got) == {"loss", "accuracy"}
        for name, want in _expected(model, *data).items():
            np.testing.assert_allclose(got[name], want, rtol=1e-5)
    np.testing.assert_allclose(
        wrapper.predict(x, batch_size=5, verbose=0), model(x).numpy(), 1e-6
    )
    return x, y


@pytest.mark.parametrize("method", [ASB, MetaASB])
def test_evaluate_and_predict_use_the_classifier(method):
    model = _mlp()
    wrapper = method(model, 0.1)
    wrapper.compile("adam")
    x, y = _check_evaluate_and_predict(wrapper, model)
    # Validation during fit evaluates the classifier after the episodes.
    history = _fit(wrapper, _episodes(2, 0), validation_data=(x, y))
    assert set(history) == {
        "inner_loss",
        "outer_loss",
        "outer_accuracy",
        "val_loss",
        "val_accuracy",
    }
    want = _expected(model, x, y)
    np.testing.assert_allclose(history["val_loss"][-1], want["loss"], 1e-5)
    episodes = tf.data.Dataset.from_tensor_slices(_episodes(1, 0))
    with pytest.raises(UsageError, match="labelled data"):
        wrapper.evaluate(episode_batches(episodes, 1), verbose=0)


def test_mirrored_evaluate_sums_uneven_shares_exactly():
    strategy = step_methods.mirrored()
    with strategy.scope():
        model = _mlp()
        wrapper = ASB(model, 0.1)
        wrapper.compile("adam")
    # 5 → shares 3 + 2 (also the first batch Keras builds from); 4 → the
    # last batch of 1 leaves one replica empty.
    _check_evaluate_and_predict(wrapper, model)


def _state(wrapper):
    variables = wrapper.variables + wrapper.optimizer.variables
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("method", [ASB, MetaASB])
def test_saved_wrapper_loads_and_trains_on_bit_identically(method, tmp_path):
    model = _mlp()
    head = model.get_layer("classifier")
    extra = {"first_order": True} if method is MetaASB else {}
    wrapper = method(
        model,
        0.2,
        zap_reset_bias=False,
        zap_reset_optimizer=True,
        inner_variables=[head.kernel, head.bias],
        seed=7,
        **extra,
    )
    wrapper.compile(keras.optimizers.Adam(1e-2, beta_1=0.8))
    _fit(wrapper, _episodes(2, 0))
    wrapper.save(tmp_path / "wrapper.keras")
    loaded = keras.models.load_model(tmp_path / "wrapper.keras")

    assert type(loaded) is method
    for name in SETTINGS:
        assert getattr(loaded, name) == getattr(wrapper, name), name
    paths = loaded.get_config()["inner_variables"]
    assert paths == ["classifier/kernel", "classifier/bias"]
    assert loaded.optimizer.get_config() == wrapper.optimizer.get_config()
    assert int(loaded.optimizer.iterations) == 2
    seed = wrapper._seed_generator.state.numpy()
    assert list(seed) != [7, 0]  # the zaps drew from it
    np.testing.assert_array_equal(loaded._seed_generator.state.numpy(), seed)
    before = _state(wrapper)
    for got, want in zip(_state(loaded), before):
        np.testing.assert_array_equal(got, want)

    _fit(wrapper, _episodes(2, 1))
    _fit(loaded, _episodes(2, 1))
    after = _state(wrapper)
    for got, want in zip(_state(loaded), after):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(after[-1], before[-1])


def test_inner_variables_paths_and_unsaveable_predicates(tmp_path):
    model = _mlp()
    by_path = ASB(model, 0.1, inner_variables=["classifier/kernel"])
    assert by_path.get_config()["inner_variables"] == ["classifier/kernel"]
    assert by_path._inner_index == (2,)
    with pytest.raises(UsageError, match="classifier/kernal"):
        ASB(model, 0.1, inner_variables=["classifier/kernal"])
    predicate = MetaASB(model, 0.1, inner_variables=lambda v: True)
    with pytest.raises(UsageError, match="list of the variables"):
        predicate.get_config()
    with pytest.raises(UsageError, match="list of the variables"):
        predicate.save(tmp_path / "predicate.keras")


@pytest.mark.slow  # ~18 s: the example's Meta-ASB traces 20 inner steps.
def test_readme_example_runs(tmp_path, monkeypatch):
    section = README.read_text().split("### ASB and Meta-ASB on your own")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    lines = [line for line in code.splitlines() if line.strip()]
    assert len([line for line in lines if line[0] != "#"]) <= 15
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    for method in (ASB, MetaASB):
        loaded = keras.models.load_model(f"{method.__name__}.keras")
        assert type(loaded) is method and loaded.optimizer.iterations == 100
