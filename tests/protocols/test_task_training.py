"""Per-task training machinery: seen-class masking is exact for the loss
and the accuracy, the per-task schedules follow their formulas and
restart, the online accuracy is each batch's accuracy before its update,
and the best validation epoch's weights come back."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras.errors import UsageError
from zapkeras.protocols import task_training


def test_masking_equals_slicing_the_logits():
    seen = task_training.SeenClasses(5)
    seen.count.assign(3)
    logits = tf.constant([[1.0, 2.0, 0.5, 9.0, 7.0], [0.1, 0.0, 3.0, 5.0, 1.0]])
    y = tf.constant([1, 2])
    masked = seen.mask(logits).numpy()
    np.testing.assert_array_equal(masked[:, :3], logits.numpy()[:, :3])
    assert (masked[:, 3:] == -1e9).all()
    expected = keras.losses.sparse_categorical_crossentropy(
        y, logits[:, :3], from_logits=True
    )
    np.testing.assert_allclose(seen.cross_entropy(y, logits), expected, 1e-6)
    # unmasked argmax would be class 3 for both rows
    np.testing.assert_array_equal(seen.accuracy(y, logits), [1.0, 1.0])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = tf.reduce_sum(seen.cross_entropy(y, logits))
    grad = tape.gradient(loss, logits).numpy()
    assert (grad[:, 3:] == 0).all() and (grad[:, :3] != 0).all()


def test_compiled_masking_survives_the_compile_config():
    seen = task_training.SeenClasses(4)
    seen.count.assign(2)
    inputs = keras.Input((3,))
    model = keras.Model(
        inputs, keras.layers.Dense(4, name="classifier")(inputs)
    )
    seen.compile(model, keras.optimizers.SGD(0.1))
    clone = keras.models.clone_model(model)
    clone.compile_from_config(model.get_compile_config())
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 0, 1])
    logits = model(x).numpy()
    expected = np.mean(np.argmax(logits[:, :2], -1) == y)
    for m in (model, clone):
        result = m.evaluate(x, y, verbose=0, return_dict=True)
        assert result["accuracy"] == pytest.approx(expected)


def test_schedules_follow_their_formulas_and_restart():
    constant = task_training.TaskLearningRate(0.05)
    assert float(constant(123)) == pytest.approx(0.05)
    warm = task_training.TaskLearningRate(0.1, "warmup", warmup_fraction=0.1)
    warm.begin_task(start=1000, steps=200)  # warm-up over 20 steps
    values = [float(warm(1000 + t)) for t in (0, 5, 20, 150)]
    np.testing.assert_allclose(values, [0.0, 0.025, 0.1, 0.1], rtol=1e-6)
    cycle = task_training.TaskLearningRate(0.01, "one_cycle")
    cycle.begin_task(start=0, steps=101)  # PyTorch: up 29.3 steps, down 70.7
    up = 0.3 * 101 - 1
    expected = {
        0: 0.01 / 25,
        10: 0.0004 + (0.01 - 0.0004) * 10 / up,
        int(up)
        + 1: 0.01
        + (0.01 / 25 / 1e4 - 0.01) * (int(up) + 1 - up) / (101 - up - 1),
        100: 0.01 / 25 / 1e4,
    }
    for step, value in expected.items():
        assert float(cycle(step)) == pytest.approx(value, rel=1e-4), step
    cycle.begin_task(start=500, steps=101)
    assert float(cycle(500)) == pytest.approx(0.0004, rel=1e-5)


def test_bad_schedule_names_the_setting():
    with pytest.raises(UsageError, match="lr_schedule"):
        task_training.TaskLearningRate(0.1, "cosine")
    with pytest.raises(UsageError, match="learning_rate"):
        task_training.TaskLearningRate(0.0)


class _Writer:
    """Collects what would go to TensorBoard."""

    def __init__(self):
        self.rows = []

    def scalars(self, prefix, values, step):
        self.rows.append((prefix, dict(values), step))

    def fit_logs(self, prefix, logs, step, name="{}"):
        values = {name.format(k): v for k, v in (logs or {}).items()}
        self.rows.append((prefix, values, step))


def _model():
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(3, name="classifier")(inputs)
    model = keras.Model(inputs, outputs)
    return model


def test_online_accuracy_is_each_batch_before_its_update():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 2)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    seen = task_training.SeenClasses(3)
    model = _model()
    initial = model.get_weights()
    seen.compile(model, keras.optimizers.SGD(0.0))
    writer = _Writer()
    recorder = task_training.BatchRecorder(writer, window=2, global_step=7)
    recorder.begin()
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # 4, 4, 2
    model.fit(batches, epochs=2, callbacks=[recorder], shuffle=False, verbose=0)
    logits = model(x).numpy()  # lr 0: the same model before every batch
    per_batch = [
        np.mean(np.argmax(logits[s : s + 4], -1) == y[s : s + 4])
        for s in (0, 4, 8)
    ]
    np.testing.assert_allclose(recorder.accuracy, per_batch * 2, atol=1e-6)
    ce = keras.losses.sparse_categorical_crossentropy(y, logits, True).numpy()
    np.testing.assert_allclose(
        recorder.loss, [ce[s : s + 4].mean() for s in (0, 4, 8)] * 2, 1e-5
    )
    assert recorder.global_step == 13
    windows = [r for r in writer.rows if "online_accuracy" in r[1]]
    assert [step for _, _, step in windows] == [9, 11, 13]
    assert windows[0][0] == "continual/steps"
    # with learning, the first batch is still measured before its update
    model.set_weights(initial)
    seen.compile(model, keras.optimizers.SGD(1.0))
    recorder.begin()
    model.fit(batches.take(1), callbacks=[recorder], shuffle=False, verbose=0)
    assert recorder.accuracy == pytest.approx([per_batch[0]])
    assert model.get_weights()[0].tolist() != initial[0].tolist()


class _SetWeights(keras.callbacks.Callback):
    """At epoch e's end the kernel is e and val_accuracy is scores[e]."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        kernel = self.model.get_layer("classifier").kernel
        kernel.assign(np.full(kernel.shape, float(epoch), np.float32))
        logs["val_accuracy"] = self.scores[epoch]


def test_best_weights_restores_the_best_validation_epoch():
    model = _model()
    best = task_training.BestWeights(model)
    best.set_model(model)
    best.begin_task()
    before = model.get_weights()
    best.restore()  # nothing seen yet: no change
    np.testing.assert_array_equal(model.get_weights()[0], before[0])
    setter = _SetWeights([0.2, 0.6, 0.4])
    for epoch in range(3):
        setter.set_model(model)
        logs = {}
        setter.on_epoch_end(epoch, logs)
        best.on_epoch_end(epoch, logs)
    best.restore()
    assert (model.get_layer("classifier").kernel.numpy() == 1.0).all()
    best.begin_task()  # a new task forgets the old best
    best.on_epoch_end(0, {"val_accuracy": 0.1})
    model.get_layer("classifier").kernel.assign(np.zeros((2, 3)))
    best.restore()
    assert (model.get_layer("classifier").kernel.numpy() == 1.0).all()
