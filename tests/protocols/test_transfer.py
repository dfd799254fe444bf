"""Transfer protocols (frati2024 Alg. 2 and 3): the compiled learner equals
a plain eager loop, linear probing leaves the body bit-identical, full-model
training restores the body every run, the head starts Kaiming-normal with
zero bias, accuracies (top-1 and top-5) are per class, per-task losses are
[points, tasks]; the reference-exact options: a new support/query split per
run, the i.i.d. step-1 evaluation (docs/reference_codes.md §1.7, §1.8)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras import data as data_lib
from zapkeras.optimizers import TorchAdam
from zapkeras.outputs import tensorboard
from zapkeras.protocols import transfer
from zapkeras.protocols import transfer_sweep
from zapkeras.protocols.base import Data
from zapkeras.protocols.base import RunContext
from zapkeras.protocols.learner import TransferLearner


def _tiny_model(num_classes, size=4):
    keras.utils.set_random_seed(0)  # independent of the tests run before
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(3, 3, name="conv0")(inputs)
    x = keras.layers.Flatten(name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs)


def _pool(classes=8, per_class=6, size=4, seed=0):
    rng = np.random.default_rng(seed)
    return data_lib.LabeledImages(
        images=rng.random((classes * per_class, size, size, 1)).astype(
            np.float32
        ),
        labels=np.repeat(np.arange(classes), per_class).astype(np.int32),
        class_names=tuple(str(i) for i in range(classes)),
    )


def _context(tmp_path):
    return RunContext(
        seed=0,
        strategy=tf.distribute.get_strategy(),
        output_dir=str(tmp_path),
        writer=tensorboard.Writer(str(tmp_path / "tb")),
    )


def test_per_class_accuracy_and_loss_are_macro_in_order():
    learner = TransferLearner(
        _tiny_model(3), 3, keras.optimizers.Adam, linear_probe=True
    )
    # Features one-hot in units 0-2, head = identity there: logits = 50·e_k.
    kernel = np.zeros(learner.head.kernel.shape, np.float32)
    kernel[[0, 1, 2], [0, 1, 2]] = 1.0
    learner.head.kernel.assign(kernel)
    learner.head.bias.assign(np.zeros(3, np.float32))
    features = np.eye(kernel.shape[0], dtype=np.float32)[[0, 1, 1, 1, 0, 2]]
    acc, loss = learner.per_class(
        features * 50.0, np.array([0, 0, 1, 1, 1, 2]), np.array([2, 0, 1])
    )
    np.testing.assert_allclose(acc, [1.0, 0.5, 2 / 3])
    assert loss[0] < 1e-6 and loss[1] == pytest.approx(25.0, rel=1e-3)


def test_eval_points_first_every_and_last():
    assert transfer.eval_points(10, 3) == [1, 3, 6, 9, 10]
    assert transfer.eval_points(1, 50) == [1]


def test_reset_gives_kaiming_head_zero_bias_fresh_optimizer():
    inputs = keras.Input((2048,))
    model = keras.Model(
        inputs, keras.layers.Dense(300, name="classifier")(inputs)
    )
    learner = TransferLearner(
        model, 300, keras.optimizers.Adam, linear_probe=True
    )
    learner.train(np.ones((3, 2048)), [1, 2, 3], 1)
    learner.reset(0.01, seed=5)
    kernel = learner.head.kernel.numpy()
    assert abs(kernel.std() / np.sqrt(2 / 2048) - 1) < 0.02
    assert abs(kernel.mean()) < 1e-3
    assert not learner.head.bias.numpy().any()
    assert int(learner.optimizer.iterations.numpy()) == 0
    assert float(learner.optimizer.learning_rate.numpy()) == pytest.approx(0.01)


@pytest.mark.parametrize("linear_probe", [True, False])
def test_compiled_learner_matches_eager_reference_loop(linear_probe):
    rng = np.random.default_rng(0)
    x = rng.random((12, 4, 4, 1)).astype(np.float32)
    y = rng.integers(0, 5, size=12).astype(np.int32)
    model = _tiny_model(5)
    learner = TransferLearner(
        model, 5, keras.optimizers.Adam, linear_probe=linear_probe
    )
    learner.reset(0.05, seed=1)
    reference = _tiny_model(5)
    reference.set_weights(model.get_weights())
    reference.get_layer("classifier").set_weights(learner.head.get_weights())
    variables = reference.trainable_variables
    if linear_probe:
        variables = reference.get_layer("classifier").trainable_variables
    opt = keras.optimizers.Adam(0.05)
    for t in range(12):  # one example per step, as the reference does
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                y[t : t + 1], reference(x[t : t + 1]), from_logits=True
            )
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
    inputs = learner.inputs(x)
    learner.train(inputs[:7], y[:7], 1)
    learner.train(inputs[7:], y[7:], 1)
    np.testing.assert_allclose(
        learner.logits(inputs), reference.predict(x, verbose=0), atol=1e-4
    )


@pytest.mark.parametrize("adam", [keras.optimizers.Adam, TorchAdam])
@pytest.mark.parametrize("linear_probe", [True, False])
def test_fused_adam_equals_keras_adam_and_other_optimizers_keep_theirs(
    linear_probe, adam
):
    rng = np.random.default_rng(1)
    x = rng.random((40, 4, 4, 1)).astype(np.float32)
    y = rng.integers(0, 5, size=40).astype(np.int32)
    learners = []
    for fused in (True, False):
        learner = TransferLearner(
            _tiny_model(5), 5, adam, linear_probe=linear_probe
        )
        assert learner._adam_slots is not None
        if not fused:
            learner._adam_slots = None  # Keras' own Adam.apply
        learner.reset(0.01, seed=3)
        learner.train(learner.inputs(x), y, 1)
        learners.append(learner)
    fused, plain = learners
    assert int(fused.optimizer.iterations.numpy()) == 40
    for a, b in zip(fused.optimizer.variables, plain.optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(fused.variables, plain.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    sgd = TransferLearner(
        _tiny_model(5), 5, keras.optimizers.SGD, linear_probe=linear_probe
    )
    amsgrad = TransferLearner(
        _tiny_model(5),
        5,
        lambda **kw: keras.optimizers.Adam(amsgrad=True, **kw),
        linear_probe=linear_probe,
    )
    assert sgd._adam_slots is None and amsgrad._adam_slots is None


def test_linear_probing_leaves_the_body_bit_identical(tmp_path):
    model = _tiny_model(5)
    before = [w.copy() for w in model.get_weights()]
    result = transfer.SequentialTransfer(
        learning_rates=(0.01, 0.001),
        runs=2,
        classes=5,
        train_per_class=4,
        eval_every=2,
    )(model, Data(transfer=_pool()), _context(tmp_path))
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert result["best_lr"] in (0.01, 0.001)
    assert set(result["by_lr"]) == {"0.01", "0.001"}
    assert (tmp_path / "curves" / "transfer_sequential.json").exists()


def test_full_model_training_restores_the_body_each_run(tmp_path):
    model = _tiny_model(5)
    body_before = model.get_layer("conv0").get_weights()
    learner = TransferLearner(
        model, 8, keras.optimizers.Adam, linear_probe=False
    )
    learner.reset(0.1, seed=0)
    learner.train(np.random.rand(6, 4, 4, 1), np.arange(6), 1)
    changed = model.get_layer("conv0").get_weights()
    assert not np.allclose(changed[0], body_before[0])
    learner.reset(0.1, seed=0)
    for got, want in zip(model.get_layer("conv0").get_weights(), body_before):
        np.testing.assert_array_equal(got, want)


def test_task_losses_have_shape_points_by_tasks(tmp_path):
    pool = _pool()
    # Each class lights its own pixel, so learning one task is visible in
    # that task's loss alone.
    for c in range(pool.num_classes):
        pool.images[pool.labels == c, c // 4, c % 4, 0] += 2.0
    transfer.SequentialTransfer(
        learning_rates=(0.01,),
        runs=1,
        classes=5,
        train_per_class=4,
        eval_every=5,
        task_loss_every=2,
        optimizer=keras.optimizers.SGD,  # no momentum carried across tasks
    )(_tiny_model(5), Data(transfer=pool), _context(tmp_path))
    losses = np.load(tmp_path / "curves" / "task_losses" / "lr_0.01_run_0.npy")
    assert losses.shape == (10, 5)  # 20 steps / 2, 5 tasks
    assert np.isfinite(losses).all()
    # Task 4 is trained in steps 17-20 only: its loss falls then, more
    # than any other task's.
    change = losses[-1] - losses[7]
    assert change[4] < 0 and np.argmin(change) == 4


def test_iid_transfer_evaluates_every_few_steps(tmp_path):
    result = transfer.IidTransfer(
        learning_rates=(0.01,),
        runs=2,
        classes=6,
        train_per_class=4,
        batch_size=4,
        eval_every_steps=2,
        epochs=2,
    )(_tiny_model(5), Data(transfer=_pool()), _context(tmp_path))
    assert 0.0 <= result["test_accuracy"] <= 1.0
    with open(tmp_path / "curves" / "transfer_iid.json") as f:
        curves = json.load(f)
    steps = [p["step"] for p in curves["0.01"][0]["curve"]]
    assert steps == [2, 4, 6, 8, 10, 12]  # 24 examples / 4 per batch, x2


def test_top5_counts_labels_with_fewer_than_5_larger_logits():
    learner = TransferLearner(
        _tiny_model(8), 8, keras.optimizers.Adam, linear_probe=True
    )
    kernel = np.zeros(learner.head.kernel.shape, np.float32)
    kernel[np.arange(8), np.arange(8)] = 1.0  # logits = features[:, :8]
    learner.head.kernel.assign(kernel)
    learner.head.bias.assign(np.zeros(8, np.float32))
    descending = np.arange(8, 0, -1, dtype=np.float32)  # class c ranks c
    features = np.zeros((6, kernel.shape[0]), np.float32)
    features[:, :8] = descending
    labels = np.array([0, 4, 5, 1, 7, 3])  # ranks 0, 4, 5 | 1, 7, 3
    classes = np.array([0, 4, 5, 1, 7, 3])
    scores = learner.scores(features, labels, classes)
    np.testing.assert_array_equal(scores["accuracy"], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(scores["top5_accuracy"], [1, 1, 0, 1, 0, 1])


def _iid(tmp_path, model_classes=5, **kwargs):
    settings = dict(
        learning_rates=(0.01,),
        runs=2,
        classes=5,
        train_per_class=4,
        batch_size=4,
        eval_every_steps=2,
    )
    result = transfer.IidTransfer(**{**settings, **kwargs})(
        _tiny_model(model_classes), Data(transfer=_pool()), _context(tmp_path)
    )
    with open(tmp_path / "curves" / "transfer_iid.json") as f:
        return result, json.load(f)["0.01"]


def test_iid_transfer_reports_top5_and_evaluates_after_step_one(tmp_path):
    result, runs = _iid(tmp_path / "a", classes=8, eval_first_step=True)
    steps = [p["step"] for p in runs[0]["curve"]]
    assert steps == [1, 2, 4, 6, 8]  # 32 examples / 4 per batch
    protocol = transfer.IidTransfer(learning_rates=(0.01,))
    assert set(protocol.result_keys()) == {
        k for k in result if k != "by_lr"
    } | {f"by_lr.0.01.{k}" for k in result["by_lr"]["0.01"]}
    assert (
        "test_top5_accuracy" in result and "train_top5_accuracy_std" in result
    )
    assert 0 <= result["test_top5_accuracy"] <= 1
    assert "test_top5_accuracy_all" in runs[0]["curve"][0]
    # With at most 5 outputs every label is in the top 5.
    five = transfer.IidTransfer(
        learning_rates=(0.01,), runs=1, classes=5, train_per_class=4
    )
    pool = _pool(classes=5)
    result = five(_tiny_model(5), Data(transfer=pool), _context(tmp_path))
    assert result["test_top5_accuracy"] == result["train_top5_accuracy"] == 1
    assert (
        "test_top5_accuracy" not in transfer.SequentialTransfer().result_keys()
    )


def test_resplit_per_run_draws_a_split_per_run_index(tmp_path, monkeypatch):
    supports = []
    resplit = transfer_sweep.TransferSweep.resplit

    def recording(self, run):
        resplit(self, run)
        supports.append(self.support.images.copy())

    monkeypatch.setattr(transfer_sweep.TransferSweep, "resplit", recording)
    rates = dict(learning_rates=(0.01, 0.001))
    first, curves = _iid(tmp_path / "a", resplit_per_run=True, **rates)
    # Construction (run 0), then runs 0 and 1 of each learning rate.
    assert len(supports) == 5
    assert not np.array_equal(supports[1], supports[2])  # runs differ
    np.testing.assert_array_equal(supports[1], supports[3])  # rates share
    np.testing.assert_array_equal(supports[2], supports[4])
    again, curves_again = _iid(tmp_path / "b", resplit_per_run=True, **rates)
    assert again == first and curves_again == curves
    del supports[:]
    off, curves_off = _iid(tmp_path / "c", **rates)
    assert not supports  # off: one split per seed, as before
    assert curves_off != curves
    sequential = [
        transfer.SequentialTransfer(
            learning_rates=(0.01,),
            runs=2,
            classes=5,
            train_per_class=4,
            resplit_per_run=True,
        )(_tiny_model(5), Data(transfer=_pool()), _context(tmp_path / d))
        for d in ("d", "e")
    ]
    assert sequential[0] == sequential[1]
    assert not np.array_equal(supports[1], supports[2])


def test_one_split_per_seed_by_default(tmp_path):
    pool = _pool()
    context = _context(tmp_path)
    sweep = transfer_sweep.TransferSweep(
        "iid",
        _tiny_model(5),
        pool,
        context,
        4,
        optimizer=keras.optimizers.Adam,
        linear_probe=False,
    )
    support, query = data_lib.split_per_class(pool, 4, seed=context.seed)
    np.testing.assert_array_equal(sweep.support.images, support.images)
    np.testing.assert_array_equal(sweep.query.images, query.images)
