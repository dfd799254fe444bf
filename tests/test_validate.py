"""zapkeras.validate: each check accepts the right values (normalised),
rejects wrong types and out-of-range values with a UsageError naming the
setting, and the configurables use them, so a mistyped setting is a
UsageError and never a TypeError or ValueError."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zapkeras import models
from zapkeras import validate
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import episode_batches
from zapkeras.methods.cbp import ContinualBackprop
from zapkeras.methods.hare_tortoise import HareTortoise
from zapkeras.methods.redo import ReDo
from zapkeras.methods.regularizers import RegenerativeL2
from zapkeras.methods.regularizers import SpectralDecoupling
from zapkeras.methods.shrink_perturb import ShrinkAndPerturb
from zapkeras.methods.swr import SelectiveWeightReinit
from zapkeras.methods.zapping import Zapping
from zapkeras.methods.zapping import zap
from zapkeras.models.augment import augmentation

v = validate

# (check, value, keyword arguments, normalised result)
ACCEPTED = [
    (v.positive_int, 3, {}, 3),
    (v.positive_int, np.int64(256), {}, 256),
    (v.positive_int, np.uint8(1), {}, 1),
    (v.non_negative_int, 0, {}, 0),
    (v.non_negative_int, np.int32(7), {}, 7),
    (v.integer, -2, {"low": -3, "high": 0}, -2),
    (v.positive_number, 1e-30, {}, 1e-30),
    (v.positive_number, 2, {}, 2.0),
    (v.positive_number, np.float32(0.5), {}, 0.5),
    (v.positive_number, np.int64(4), {}, 4.0),
    (v.non_negative_number, 0, {}, 0.0),
    (v.non_negative_number, 1e6, {}, 1e6),
    (v.number, -1.5, {}, -1.5),
    (v.number, 180, {"low": 0, "high": 180}, 180.0),
    (v.fraction, 0, {}, 0.0),
    (v.fraction, 1, {}, 1.0),
    (v.fraction, 1.0, {"low_open": True}, 1.0),
    (v.fraction, 0.0, {"high_open": True}, 0.0),
    (v.fraction, 0.999, {"low_open": True, "high_open": True}, 0.999),
    (v.probability, np.float64(0.25), {}, 0.25),
    (v.seed, None, {}, None),
    (v.seed, 0, {}, 0),
    (v.seed, np.int64(2**40), {}, 2**40),
    (v.learning_rates, (0.1, 0.01), {}, (0.1, 0.01)),
    (v.learning_rates, [1, 2e-3], {}, (1.0, 0.002)),
    (v.learning_rates, np.array([0.5]), {}, (0.5,)),
    (v.positive_ints, (2, 2, 2, 2), {"length": 4}, (2, 2, 2, 2)),
    (v.positive_ints, [], {}, ()),
    (v.positive_ints, np.array([3, 4]), {}, (3, 4)),
    (v.boolean, True, {}, True),
    (v.boolean, np.bool_(False), {}, False),
]


@pytest.mark.parametrize(
    "check, value, kwargs, expected",
    ACCEPTED,
    ids=[f"{c.__name__}-{x!r}" for c, x, _, _ in ACCEPTED],
)
def test_accepted_values_are_normalised(check, value, kwargs, expected):
    got = check(value, "SOME_SETTING", **kwargs)
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(got, tuple):
        assert all(type(g) is type(e) for g, e in zip(got, expected))


# (check, value, keyword arguments, text the message must contain)
REJECTED = [
    # wrong types
    (v.positive_int, "abc", {}, "(a str); use an integer ≥ 1"),
    (v.positive_int, 2.5, {}, "(a float)"),
    (v.positive_int, 2.0, {}, "(a float)"),
    (v.positive_int, None, {}, "= None; use an integer"),
    (v.positive_int, True, {}, "(a bool)"),
    (v.positive_int, np.bool_(True), {}, "(a bool"),
    (v.positive_int, [3], {}, "(a list)"),
    (v.non_negative_int, "0", {}, "(a str)"),
    (v.positive_number, "0.1", {}, "(a str); use a number > 0"),
    (v.positive_number, None, {}, "use a number > 0"),
    (v.positive_number, False, {}, "(a bool)"),
    (v.positive_number, (0.1,), {}, "(a tuple)"),
    (v.non_negative_number, "1e-5", {}, "(a str)"),
    (v.fraction, "half", {"low_open": True}, "use a number in (0, 1]"),
    (v.fraction, True, {}, "(a bool)"),
    (v.seed, 1.5, {}, "(a float); use an integer ≥ 0"),
    (v.seed, "0", {}, "(a str)"),
    (v.seed, True, {}, "(a bool)"),
    (v.learning_rates, 0.001, {}, "One value is written (0.001,)"),
    (v.learning_rates, "0.1", {}, "(a str); use a non-empty sequence"),
    (v.learning_rates, None, {}, "use a non-empty sequence"),
    (v.learning_rates, {0.1, 0.2}, {}, "(a set)"),
    (v.learning_rates, ("0.1",), {}, "Entry 0 is '0.1'"),
    (v.learning_rates, (0.1, True), {}, "Entry 1 is True"),
    (v.positive_ints, 2, {"length": 4}, "use 4 integers ≥ 1"),
    (v.positive_ints, (2, 2.5), {}, "Entry 1 is 2.5"),
    (v.positive_ints, b"ab", {}, "(a bytes)"),
    (v.boolean, 1, {}, "use True or False"),
    (v.boolean, "False", {}, "(a str)"),
    # out of range
    (v.positive_int, 0, {}, "= 0; use an integer ≥ 1"),
    (v.positive_int, -3, {}, "= -3;"),
    (v.non_negative_int, -1, {}, "use an integer ≥ 0"),
    (v.integer, 5, {"low": 0, "high": 4}, "use an integer in [0, 4]"),
    (v.positive_number, 0, {}, "use a number > 0"),
    (v.positive_number, -1e-3, {}, "use a number > 0"),
    (v.positive_number, float("inf"), {}, "= inf"),
    (v.non_negative_number, -1, {}, "use a number ≥ 0"),
    (v.non_negative_number, float("nan"), {}, "= nan"),
    (v.number, 181, {"low": 0, "high": 180}, "use a number in [0, 180]"),
    (v.fraction, 0.0, {"low_open": True}, "(0, 1]"),
    (v.fraction, 1.5, {}, "use a number in [0, 1]"),
    (v.fraction, 1.0, {"high_open": True}, "use a number in [0, 1)"),
    (v.fraction, -0.1, {}, "[0, 1]"),
    (v.probability, 2, {}, "[0, 1]"),
    (v.seed, -1, {}, "use an integer ≥ 0"),
    (v.learning_rates, (), {}, "non-empty"),
    (v.learning_rates, (0.1, -0.01), {}, "Entry 1 is -0.01"),
    (v.learning_rates, [0.0], {}, "Entry 0 is 0.0"),
    (v.positive_ints, (2, 2, 2), {"length": 4}, "= (2, 2, 2)"),
    (v.positive_ints, (2, 0), {}, "Entry 1 is 0"),
]


@pytest.mark.parametrize(
    "check, value, kwargs, fragment",
    REJECTED,
    ids=[f"{c.__name__}-{x!r}" for c, x, _, _ in REJECTED],
)
def test_rejected_values_name_the_setting_and_the_fix(
    check, value, kwargs, fragment
):
    with pytest.raises(UsageError) as caught:
        check(value, "Some.setting", **kwargs)
    message = str(caught.value)
    assert message.startswith("Some.setting = "), message
    assert "; use " in message, message
    assert fragment in message, message


def test_the_example_and_note_are_shown():
    with pytest.raises(UsageError) as caught:
        v.positive_int("abc", "WIDTH", example=256, note="Channels.")
    assert str(caught.value) == (
        "WIDTH = 'abc' (a str); use an integer ≥ 1, e.g. 256. Channels."
    )
    with pytest.raises(UsageError, match=r"e\.g\. 1e-5\.$"):
        v.positive_number(-1, "X.rate", example="1e-5")
    with pytest.raises(UsageError, match=r"e\.g\. \(0\.1, 0\.01\)"):
        v.learning_rates(0.001, "TRANSFER_LRS")
    with pytest.raises(UsageError, match="None takes the run's seed"):
        v.seed(-1, "X.seed")
    with pytest.raises(UsageError, match="None takes a fresh one"):
        v.seed(-1, "X.seed", none_means="a fresh one")


def test_long_values_are_shortened():
    with pytest.raises(UsageError) as caught:
        v.positive_int(list(range(1000)), "WIDTH")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "value, choices, expected",
    [
        ("a", ("a", "b"), "a"),
        (np.str_("b"), ("a", "b"), "b"),
        (None, (None, "pre"), None),
        (28.0, (28, 84), 28),
        (np.int64(84), (28, 84), 84),
        (True, (True, False, "reference"), True),
        (np.bool_(False), (True, False, "reference"), False),
        ("reference", (True, False, "reference"), "reference"),
    ],
)
def test_one_of_returns_the_choice(value, choices, expected):
    got = v.one_of(value, choices, "S")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "value, choices",
    [
        ("c", ("a", "b")),
        ("28", (28, 84)),
        (1, (True, False, "reference")),
        (0, (None, "pre")),
        (None, ("a",)),
        (np.zeros(3), ("a", "b")),
        ([1, 2], ((1, 2),)),
    ],
)
def test_one_of_rejects_other_values(value, choices):
    with pytest.raises(UsageError, match=r"^S = .*; use one of "):
        v.one_of(value, choices, "S")


def test_one_of_hint_replaces_the_default_fix():
    with pytest.raises(UsageError) as caught:
        v.one_of("x", ("a",), "S", hint="use 'a' (the paper).")
    assert str(caught.value) == "S = 'x'; use 'a' (the paper)."


# Configurables given a setting of the wrong type or out of range: a
# UsageError naming it (pytest.raises lets a TypeError or ValueError
# through, failing the test).
CONFIGURABLES = [
    (lambda: Zapping(fraction="half"), "Zapping.fraction = 'half'"),
    (lambda: Zapping(fraction=None), "Zapping.fraction"),
    (lambda: Zapping(std_mode=1), "Zapping.std_mode"),
    (lambda: Zapping(seed=2.5), "Zapping.seed"),
    (lambda: Zapping(seed=True), "Zapping.seed"),
    (
        lambda: SelectiveWeightReinit((1, "steps"), "1e-5"),
        "SelectiveWeightReinit.factor",
    ),
    (
        lambda: SelectiveWeightReinit((1, "steps"), 0.1, decay="0"),
        "SelectiveWeightReinit.decay",
    ),
    (
        lambda: ContinualBackprop(1e-4, 2.5),
        "ContinualBackprop.maturity_threshold",
    ),
    (
        lambda: ContinualBackprop("1e-4", 100),
        "ContinualBackprop.replacement_rate",
    ),
    (
        lambda: ContinualBackprop(1e-4, 100, bias_correction=1),
        "ContinualBackprop.bias_correction",
    ),
    (lambda: ReDo((10, "steps"), "0.1"), "ReDo.threshold"),
    (lambda: ShrinkAndPerturb(noise_std="a"), "ShrinkAndPerturb.noise_std"),
    (
        lambda: ShrinkAndPerturb(lambda_head=[0.5]),
        "ShrinkAndPerturb.lambda_head",
    ),
    (lambda: HareTortoise(momentum="0.9"), "HareTortoise.momentum"),
    (lambda: RegenerativeL2(None), "RegenerativeL2.strength"),
    (lambda: SpectralDecoupling("1"), "SpectralDecoupling.lam"),
    (lambda: base.Method(seed="0"), "Method.seed"),
    (
        lambda: models.frati_convnet(10, width="abc"),
        "frati_convnet.width = 'abc'",
    ),
    (lambda: models.frati_convnet(10, width=2.5), "frati_convnet.width = 2.5"),
    (
        lambda: models.frati_convnet(10, image_size="28"),
        "frati_convnet.image_size",
    ),
    (lambda: models.anml(10, width=None), "anml.width = None"),
    (
        lambda: models.mlp(10, input_shape=(4,), depth=2.5),
        "mlp.depth = 2.5",
    ),
    (
        lambda: models.mlp(10, input_shape=(4,), width="8"),
        "mlp.width = '8'",
    ),
    (lambda: models.resnet18(10, blocks=2), "resnet18.blocks = 2"),
    (lambda: models.resnet18(10, width=1.5), "resnet18.width"),
    (lambda: models.vgg16(10, hidden=512), "vgg16.hidden = 512"),
    (lambda: models.vit(10, heads="3"), "vit.heads = '3'"),
    (lambda: models.vit(10, dropout=1.0), "vit.dropout"),
    (lambda: augmentation(padding=1.5), "augmentation.padding"),
    (lambda: augmentation(rotation="15"), "augmentation.rotation"),
    (lambda: augmentation(seed=-1), "augmentation.seed"),
]


@pytest.mark.parametrize(
    "build, fragment",
    CONFIGURABLES,
    ids=[fragment for _, fragment in CONFIGURABLES],
)
def test_configurables_raise_usage_errors(build, fragment):
    with pytest.raises(UsageError) as caught:
        build()
    assert fragment in str(caught.value)


def _classifier():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="classifier")(inputs)
    return keras.Model(inputs, outputs)


def test_asb_and_zap_settings_raise_usage_errors():
    model = _classifier()
    with pytest.raises(UsageError, match="ASB.inner_learning_rate = '0.1'"):
        ASB(model, "0.1")
    with pytest.raises(UsageError, match="ASB.seed = -1"):
        ASB(model, 0.1, seed=-1)
    with pytest.raises(UsageError, match="num_replicas = 2.0"):
        episode_batches(tf.data.Dataset.range(2), 2.0)
    head = model.get_layer("classifier")
    with pytest.raises(UsageError, match="zap.seed = -1"):
        zap(head, [0], seed=-1)
    with pytest.raises(UsageError, match="zap.seed = 'x'"):
        zap(head, [0], seed="x")
    assert ASB(model, np.float32(0.5), seed=np.int64(3)).seed == 3


def test_numpy_settings_build_the_same_model():
    keras.utils.set_random_seed(0)
    plain = models.frati_convnet(3, width=2)
    keras.utils.set_random_seed(0)
    numpy = models.frati_convnet(np.int64(3), width=np.int32(2))
    assert [w.shape for w in numpy.weights] == [w.shape for w in plain.weights]
    for a, b in zip(numpy.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
