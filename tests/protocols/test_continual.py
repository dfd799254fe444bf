"""The continual protocol end to end on the embedded dataset with a tiny
MLP: results keys and per-task lengths, task hooks and per-task epochs in
order, TensorBoard tags, class masking, the fresh baseline, exact resume,
same seed same results, one replica vs two."""

import functools
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from tests.cli_utils import read_scalar_tags
from tests.conftest import MIRRORED_DEVICES
from zapkeras import distribute
from zapkeras.data import continual
from zapkeras.data import warm_start
from zapkeras.data.continual_sources import continual_dataset
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.models import mlp
from zapkeras.outputs import tensorboard
from zapkeras.protocols import continual as protocol
from zapkeras.protocols.base import Data
from zapkeras.protocols.base import RunContext
from zapkeras.protocols.base import build_model

BATCH = 10  # 90 training images: 9 steps per epoch


@pytest.fixture(scope="module")
def data():
    gin.clear_config()
    gin.bind_parameter("glyph_class_sets.background_classes", 5)
    gin.bind_parameter("glyph_class_sets.evaluation_classes", 1)
    try:
        yield continual_dataset("embedded", None, seed=0, image_size=12)
    finally:
        gin.clear_config()


class Spy(base.Method):
    """Records the task hooks and the epochs each fit runs, in order."""

    def __init__(self):
        super().__init__()
        self.events = []

    def on_task_begin(self, task):
        self.events.append(("begin", task))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch", epoch))

    def on_task_end(self, task):
        self.events.append(("end", task))


class Crash(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == 14:
            raise RuntimeError("interrupted")


def _run(data, out, problem, strategy=None, **settings):
    strategy = strategy or tf.distribute.get_strategy()
    train, test = data

    def build():
        with strategy.scope():
            return build_model(
                functools.partial(mlp, width=8, depth=2),
                train.num_classes,
                train.images.shape[1:],
            )

    context = RunContext(
        seed=0,
        strategy=strategy,
        output_dir=str(out),
        writer=tensorboard.Writer(os.path.join(str(out), "tensorboard")),
        build_model=build,
    )
    keras.utils.set_random_seed(0)
    model = build()
    settings = {"batch_size": BATCH, "probe_size": 30, **settings}
    try:
        result = protocol.ContinualLearning(problem=problem, **settings)(
            model, Data(train=train, test=test), context
        )
    finally:
        context.writer.close()
    return result, model


PERMUTED = functools.partial(
    continual.permuted_tasks, tasks=3, epochs_per_task=2
)
ADAM = functools.partial(keras.optimizers.Adam)


@pytest.fixture(scope="module")
def permuted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("permuted")
    spy = Spy()
    result, _ = _run(
        data,
        out,
        PERMUTED,
        callbacks=[spy],
        accuracy_matrix=True,
        optimizer=ADAM,
        learning_rate=0.01,
    )
    return out, result, spy


def test_permuted_results_are_per_task(permuted):
    _, result, _ = permuted
    for key in ("online_accuracy_per_task", "test_accuracy_per_task"):
        assert len(result[key]) == 3
        assert all(0 <= v <= 1 for v in result[key])
    matrix = result["accuracy_matrix"]
    assert np.shape(matrix) == (3, 3)
    np.testing.assert_allclose(
        np.diag(matrix), result["test_accuracy_per_task"]
    )
    assert len(result["init_accuracy"]) == 3
    for key in ("average_accuracy", "forgetting", "backward_transfer"):
        assert key in result
    assert result["forward_transfer"] == pytest.approx(
        np.mean([matrix[j - 1][j] - result["init_accuracy"][j] for j in (1, 2)])
    )
    diagnostics = result["diagnostics_per_task"]
    for key in ("dead_fraction", "feature_srank", "gradient_magnitude"):
        assert len(diagnostics[key]) == 3
    assert diagnostics["distance_from_init"][0] == 0.0  # before training
    assert diagnostics["distance_from_init"][1] > 0.0
    assert result["global_steps"] == 3 * 2 * 9
    assert "fresh_test_accuracy" not in result


def test_hooks_and_epochs_come_in_task_order(permuted):
    _, _, spy = permuted
    expected = []
    for task in range(3):
        expected += [("begin", task), ("epoch", 0), ("epoch", 1), ("end", task)]
    assert spy.events == expected


def test_outputs_tensorboard_curves_and_plots(permuted):
    out, _, _ = permuted
    tags = read_scalar_tags(os.path.join(out, "tensorboard"))
    for tag in (
        "continual/steps/online_accuracy",
        "continual/steps/loss",
        "continual/test_accuracy",
        "continual/online_accuracy",
        "continual/diagnostics/dead_fraction",
        "continual/diagnostics/stable_rank/act1",
        "continual/average_accuracy",
    ):
        assert tag in tags
    with open(
        os.path.join(out, "curves", "continual_online_accuracy.json")
    ) as f:
        curves = json.load(f)
    assert [len(w) for w in curves["windows_per_task"]] == [2, 2, 2]  # 18/10
    for name in ("continual_accuracy", "accuracy_matrix"):
        assert os.path.getsize(os.path.join(out, "plots", f"{name}.png"))


def _comparable(result):
    return {k: v for k, v in result.items() if k != "wall_seconds"}


def test_same_seed_same_results_and_exact_resume(data, permuted, tmp_path):
    _, before, _ = permuted
    settings = dict(accuracy_matrix=True, optimizer=ADAM, learning_rate=0.01)
    with pytest.raises(RuntimeError, match="interrupted"):
        _run(data, tmp_path, PERMUTED, callbacks=[Crash()], **settings)
    resumed, _ = _run(data, tmp_path, PERMUTED, **settings)  # from epoch 1
    assert _comparable(resumed) == _comparable(before)


def test_class_incremental_masks_unseen_classes(data, tmp_path):
    problem = functools.partial(
        continual.class_incremental_tasks,
        tasks=3,
        epochs_per_task=2,
        classes_first=2,
        classes_per_task=2,
        validation_fraction=0.2,
    )
    checks = []

    class Check(base.Method):
        def on_task_end(self, task):
            tasks = problem(*data, seed=0)
            x, y = tasks.matrix_test(0)
            logits = self.model.predict(x, verbose=0)
            seen = tasks.seen[task]
            checks.append(np.mean(np.argmax(logits[:, :seen], -1) == y))

    result, _ = _run(
        data,
        tmp_path,
        problem,
        callbacks=[Check()],
        restore_best=True,
        accuracy_matrix=True,
    )
    assert result["classes_seen"] == [2, 4, 6]
    matrix = result["accuracy_matrix"]
    assert [row.count(None) for row in matrix] == [2, 1, 0]
    np.testing.assert_allclose([row[0] for row in matrix], checks, atol=1e-6)
    assert "forward_transfer" not in result
    assert result["global_steps"] == 2 * (3 + 5 + 8)  # 24, 48, 72 images


def test_warm_start_reports_the_fresh_baseline(data, tmp_path):
    problem = functools.partial(
        warm_start.warm_start_tasks, tasks=2, epochs_per_task=1
    )
    result, _ = _run(
        data,
        tmp_path,
        problem,
        optimizer=ADAM,
        learning_rate=0.01,
        lr_schedule="warmup",
        reset_optimizer=True,
    )
    assert result["epochs_per_phase"] == [10, 1]
    assert len(result["test_accuracy_per_task"]) == 2
    assert result["generalization_gap"] == pytest.approx(
        result["fresh_test_accuracy"] - result["test_accuracy"]
    )
    assert "accuracy_matrix" not in result
    # steps: 10 epochs of 9 examples, then 1 epoch of 90
    assert result["global_steps"] == 10 * 1 + 9


def test_one_replica_and_two_replicas_agree(data, tmp_path):
    problem = functools.partial(
        continual.permuted_tasks, tasks=2, epochs_per_task=1
    )
    one, model_one = _run(data, tmp_path / "one", problem)
    mirrored = distribute.mirrored(tuple(MIRRORED_DEVICES))
    two, model_two = _run(data, tmp_path / "two", problem, strategy=mirrored)
    assert two["test_accuracy_per_task"] == one["test_accuracy_per_task"]
    np.testing.assert_allclose(
        two["online_accuracy_per_task"], one["online_accuracy_per_task"]
    )
    for a, b in zip(model_one.get_weights(), model_two.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"restore_best": True}, "restore_best"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
    ],
)
def test_bad_settings_fail_before_anything_runs(data, settings, message):
    train, test = data
    with pytest.raises(UsageError, match=message):
        protocol.ContinualLearning(problem=PERMUTED, **settings).check(
            Data(train=train, test=test)
        )
    protocol.ContinualLearning(problem=PERMUTED).check(
        Data(train=train, test=test)
    )
