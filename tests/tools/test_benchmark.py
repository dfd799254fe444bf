"""tools/benchmark.py: the tiny preset yields every JSON key, positive and
finite; the timed work is the library's own ASB / MetaASB / TransferLearner
steps, counted by their optimizers; the FLOP count is the reference
convnet's; the PyTorch baseline runs the same model in a subprocess; the
breakdown (tools/breakdown.py) times every layer and counts its MACs."""

import dataclasses
import importlib.util
import math
import os
import sys

import numpy as np
import pytest

from zapkeras.methods import asb
from zapkeras.protocols.learner import TransferLearner

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _load(name):
    path = os.path.join(_ROOT, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, os.path.join(_ROOT, "tools"))  # as `python tools/...`
benchmark = _load("benchmark")
breakdown = importlib.import_module("breakdown")
# Seconds, nothing meaningful about speed.
TINY = dataclasses.replace(
    benchmark.PRESETS["quick"],
    width=4,
    classes=12,
    images_per_class=6,
    train_per_class=4,
    iid_batch=8,
    iid_steps=2,
    inner_steps=2,
    remember=4,
    asb_episodes=2,
    meta_asb_episodes=2,
    probe_classes=6,
    probe_steps=20,
    transfer_classes=(3, 6),
    matmul_size=64,
)


@pytest.fixture(scope="module")
def results():
    return benchmark.measure(TINY)


def _positive_finite(value):
    return (
        isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    )


def test_tiny_run_gives_every_key_positive_and_finite(results):
    for key in (
        *benchmark.SHARED_KEYS,
        "iid_fraction_of_peak",
        "matmul_peak_flops_per_s",
        "meta_asb_cost_vs_asb",
    ):
        assert _positive_finite(results[key]), key
    for key in ("seq_transfer_seconds", "seq_transfer_train_seconds"):
        assert list(results[key]) == [str(n) for n in TINY.transfer_classes]
        assert all(_positive_finite(t) for t in results[key].values())
    assert math.isfinite(results["seq_transfer_growth_exponent"])
    # One trace of the probe loop for the warm-up and every repetition.
    assert results["seq_probe_traces"] == 1
    table = benchmark.report(results)
    for key in benchmark.SHARED_KEYS:
        assert key in table


@pytest.mark.parametrize("meta", [False, True])
def test_episodes_timed_are_library_asb_steps(meta):
    images = benchmark.synthetic_images(TINY.classes, 6, 0)
    learner, stream = benchmark.asb_workload(TINY, images, meta)
    assert type(learner) is (asb.MetaASB if meta else asb.ASB)
    assert type(learner).train_step is asb.ASB.train_step
    before = [v.numpy() for v in learner.model.trainable_variables]
    benchmark.fit_rate(learner, stream, steps=2, repeats=3)
    # Warm-up episode + 3 repetitions of 2: every one an outer Adam step.
    assert int(learner.optimizer.iterations.numpy()) == 1 + 3 * 2
    after = learner.model.trainable_variables
    assert all(not np.array_equal(b, a.numpy()) for b, a in zip(before, after))


def test_probe_steps_timed_are_transfer_learner_steps():
    pool = benchmark.synthetic_images(TINY.probe_classes, 6, 1)
    model = benchmark.build_model(TINY)
    learner, x, y = benchmark.probe_workload(TINY, model, pool)
    assert type(learner) is TransferLearner and learner.linear_probe
    assert x.shape == (TINY.probe_steps, 9 * TINY.width)
    # Class after class, train_per_class examples each.
    np.testing.assert_array_equal(
        y,
        np.repeat(np.arange(TINY.probe_classes), TINY.train_per_class)[
            : TINY.probe_steps
        ],
    )
    body = [v.numpy() for v in model.weights if "classifier" not in v.path]
    benchmark.probe_rate(learner, x, y, repeats=2)
    assert int(learner.optimizer.iterations.numpy()) == len(y)
    kept = [v.numpy() for v in model.weights if "classifier" not in v.path]
    assert all(np.array_equal(a, b) for a, b in zip(body, kept))


def test_flops_are_the_reference_convnets():
    settings = dataclasses.replace(TINY, width=256, classes=963)
    model = benchmark.build_model(settings)
    assert model.get_layer("features").output.shape[-1] == 2304
    macs = (
        26 * 26 * 256 * 9 * 1
        + 11 * 11 * 256 * 9 * 256
        + 3 * 3 * 256 * 9 * 256
        + 2304 * 963
    )
    assert benchmark.flops_per_image(model) == 6 * macs


def test_breakdown_times_every_layer_and_counts_its_macs():
    model = benchmark.build_model(TINY)
    result = breakdown.measure(TINY, model, peak=1e9)
    names = [layer.name for layer in model.layers[1:]]
    assert list(result["per_batch"]) == [str(TINY.iid_batch), "1"]
    for costs in result["per_batch"].values():
        assert [row["layer"] for row in costs["layers"]] == names
        assert all(_positive_finite(row["ms"]) for row in costs["layers"])
        rated = {row["layer"] for row in costs["layers"] if row["gflop_per_s"]}
        assert rated == {"conv0", "conv1", "conv2", "classifier"}
        assert _positive_finite(costs["model_ms"])
    # Forward MACs ×3 with the input gradient, ×2 without (first layer).
    w = TINY.width
    assert breakdown._backward_macs(model.get_layer("conv0"), False) == (
        2 * 26 * 26 * w * 9 * 1
    )
    assert breakdown._backward_macs(model.get_layer("conv1"), True) == (
        3 * 11 * 11 * w * 9 * w
    )
    assert breakdown._backward_macs(model.get_layer("norm0"), True) == 0
    probe = result["seq_probe"]
    assert probe["head"] == [9 * w, max(TINY.classes, TINY.probe_classes)]
    assert _positive_finite(probe["fused_adam_ms"])
    assert "conv1" in breakdown.report(result)


def test_growth_exponent_of_linear_and_quadratic_times():
    sizes = [100, 200, 400, 600]
    linear = [0.5 * n for n in sizes]
    quadratic = [3e-4 * n * n for n in sizes]
    assert benchmark.growth_exponent(sizes, linear) == pytest.approx(1.0)
    assert benchmark.growth_exponent(sizes, quadratic) == pytest.approx(2.0)


def test_torch_baseline_runs_the_same_model_in_a_subprocess():
    pytest.importorskip("torch")
    rates = benchmark.torch_baseline(TINY, peak=1e9, flops=1e6, threads=1)
    for key in benchmark.SHARED_KEYS:
        assert _positive_finite(rates[key]), key
    assert rates["glibc_tunables"] == benchmark.GLIBC_TUNABLES
    assert rates["iid_fraction_of_peak"] == pytest.approx(
        rates["iid_images_per_s"] * 1e6 / 1e9
    )
    keras_params = benchmark.build_model(TINY).count_params()
    assert rates["parameters"] == keras_params
