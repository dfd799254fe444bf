"""The numbers results.json will hold, declared before a run: every
protocol's `result_keys()` composed by the runner's `result_paths()`
(which `zapkeras.tune` checks --objective against). Tiny runs of each
protocol hold the declarations to what a run writes, so they cannot rot."""

import os

import pytest
import tensorflow as tf

import gin
from tests.test_gin_configs import EXPERIMENTS
from tests.test_gin_configs import GIN_ROOT
from zapkeras import cli
from zapkeras import runner
from zapkeras.protocols import base as protocol_base
from zapkeras.tuning.objective import matches
from zapkeras.tuning.tuner import numeric_keys

RUN_METADATA = ("seed", "replicas")  # written by every runner's finish()

EMBEDDED_OMNIGLOT = [
    "load_class_sets.name = 'embedded'",
    "glyph_class_sets.background_classes = 12",
    "glyph_class_sets.evaluation_classes = 10",
    "PRETRAIN_CLASSES = None",
    "WIDTH = 4",
    "TRANSFER_CLASSES = 6",
    "TRANSFER_RUNS = 1",
    "TRANSFER_LRS = (0.01, 0.001)",
    "sequential_transfer.eval_every = 3",
]
CONTINUAL_TINY = [
    "DATASET = 'embedded'",
    "TASKS = 2",
    "WIDTH = 8",
    "EPOCHS_PER_TASK = 1",
    "continual_dataset.classes = 4",
    "glyph_class_sets.background_classes = 4",
    "glyph_class_sets.evaluation_classes = 1",
    "continual_learning.probe_size = 20",
]
# One run per protocol shape: both pretrainings (with method counters),
# both transfers, the zap-divergence analysis, conditions, and the
# continual protocol with and without its optional numbers.
RUNS = {
    "iid_conditions_transfers_analysis": (
        "quickstart.gin",
        [
            *EMBEDDED_OMNIGLOT,
            "PRETRAIN_CLASSES = 12",
            "PRETRAIN_EPOCHS = 1",
            "TransferRunner.transfers = "
            "{'sequential': @sequential_transfer, 'iid': @iid_transfer}",
            "TransferRunner.analyses = {'zap_divergence': @zap_divergence}",
            "zap_divergence.steps = 2",
            "iid_zap/iid_pretraining.callbacks = [@SelectiveWeightReinit()]",
            "SelectiveWeightReinit.every = (2, 'steps')",
            "SelectiveWeightReinit.factor = 1e-5",
        ],
    ),
    "asb_zap": (
        "omniglot/asb_zap.gin",
        [
            *EMBEDDED_OMNIGLOT,
            "PRETRAIN_EPISODES = 3",
            "asb_pretraining.episodes_per_epoch = 3",
            "asb_pretraining.inner_steps = 3",
            "asb_pretraining.remember = 5",
            "TransferRunner.transfers = {'sequential': @sequential_transfer}",
        ],
    ),
    "permuted": ("permuted/base.gin", CONTINUAL_TINY),
    "permuted_matrix_fresh_tortoise": (
        "permuted/base.gin",
        [
            *CONTINUAL_TINY,
            "continual_learning.accuracy_matrix = True",
            "continual_learning.fresh_baseline = True",
            "continual_learning.callbacks = [@HareTortoise()]",
            "HareTortoise.every = (1, 'epochs')",
        ],
    ),
}
# Declared numbers a run may still leave out, as these runs do.
MAY_BE_ABSENT = {
    # fresh_baseline = None leaves it to the problem; permuted trains none.
    "permuted": {
        "continual.fresh_test_accuracy",
        "continual.generalization_gap",
    },
}


@pytest.fixture(autouse=True)
def _clear_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _runner(config, bindings, output_dir):
    cli.parse_gin([os.path.join(GIN_ROOT, config)], bindings)
    return runner.create_runner(
        output_dir, None, 0, tf.distribute.get_strategy(), "x"
    )


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_every_config_declares_its_results_without_running(path, tmp_path):
    built = _runner(path, [], str(tmp_path))
    paths = built.result_paths()
    assert len(paths) == len(set(paths))
    assert all("<key>" not in p for p in paths)  # every protocol declares
    if isinstance(built, runner.ContinualRunner):
        assert "continual.test_accuracy" in paths
        warm = os.path.basename(os.path.dirname(path)) == "warm_start"
        assert ("continual.smooth_shift" in paths) == warm
    else:
        for condition in built.conditions:
            prefix = f"conditions.{condition}." if condition else ""
            assert f"{prefix}pretrain.val_accuracy" in paths
            assert f"{prefix}transfer.sequential.test_accuracy" in paths
    assert not os.listdir(tmp_path)  # nothing written, no data loaded


def test_placeholders_match_any_name():
    layer = "a.final_similarity.0.001.<layer>"
    assert matches(layer, "a.final_similarity.0.001.conv0")
    assert not matches(layer, "a.final_similarity.0.001")
    model = "continual.<model>_test_accuracy"
    assert matches(model, "continual.tortoise_test_accuracy")
    assert not matches(model, "continual.test_accuracy")
    plain = "x.by_lr.0.001.test_accuracy"
    assert matches(plain, plain)
    assert not matches(plain, "x.by_lr.0x001.test_accuracy")


def test_an_undeclared_protocol_admits_any_key_of_its_section(tmp_path):
    class Undeclared(protocol_base.Protocol):
        pass

    built = _runner(
        "quickstart.gin", ["TransferRunner.conditions = None"], str(tmp_path)
    )
    built.analyses = {"mine": Undeclared}
    paths = built.result_paths()
    assert "analyses.mine.<key>" in paths
    assert any(matches(p, "analyses.mine.any.key") for p in paths)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_a_run_writes_only_declared_numbers(name, tmp_path):
    config, bindings = RUNS[name]
    built = _runner(config, bindings, str(tmp_path / "run"))
    declared = built.result_paths()
    results = built.run()
    written = [k for k in numeric_keys(results) if k not in RUN_METADATA]
    undeclared = [
        k for k in written if not any(matches(p, k) for p in declared)
    ]
    assert not undeclared, f"written but not declared: {undeclared}"
    unwritten = {p for p in declared if not any(matches(p, k) for k in written)}
    assert unwritten == MAY_BE_ABSENT.get(name, set())
