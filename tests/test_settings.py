"""Declared settings (zapkeras/settings.py): kinds check and normalise,
`declared` names the binding (and the macro that set it), and every
configurable declares each of its number and flag parameters."""

import inspect

import pytest

import gin
import zapkeras.gin_imports  # noqa: F401  (registers every configurable)
from zapkeras import settings
from zapkeras.errors import UsageError

# Kinds with options are named first: flake8 reads a string inside an
# annotation as a forward reference.
_SHARE = settings.Fraction(low_open=True)
_MODE = settings.OneOf("a", "b")
_WIDTH = settings.Maybe(settings.PositiveInt)
_SHAPE = settings.Sequence(
    settings.PositiveInt, what="2 integers ≥ 1", length=2
)


@settings.declared("demo")
def demo(
    count: settings.PositiveInt = 3,
    rate: _SHARE = 0.5,
    mode: _MODE = "a",
    width: _WIDTH = None,
    rates: settings.LearningRates = (0.1,),
    shape: _SHAPE = (2, 2),
    flag: settings.Bool = False,
    free=None,
):
    return count, rate, mode, width, rates, shape, flag, free


@settings.declared
class Base:
    def __init__(self, *, seed: settings.Seed = None):
        self.seed = seed


class Child(Base):
    pass


def test_values_are_normalised():
    import numpy as np

    assert demo(np.int64(4), 1, "b", 8, [0.01], [3, 4], np.bool_(True)) == (
        4,
        1.0,
        "b",
        8,
        (0.01,),
        (3, 4),
        True,
        None,
    )
    assert isinstance(demo(rate=1)[1], float)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (
            {"count": 2.5},
            "demo.count = 2.5 (a float); use an integer ≥ 1, e.g. 3.",
        ),
        ({"count": 0}, "demo.count = 0; use an integer ≥ 1, e.g. 3."),
        ({"count": True}, "demo.count = True (a bool)"),
        ({"rate": 0}, "demo.rate = 0; use a number in (0, 1], e.g. 0.5."),
        ({"rate": "half"}, "demo.rate = 'half' (a str)"),
        ({"mode": "c"}, "demo.mode = 'c'; use one of 'a', 'b'."),
        ({"width": "8"}, "demo.width = '8' (a str); use an integer ≥ 1"),
        ({"rates": 0.1}, "One value is written (0.1,)."),
        ({"rates": ["fast"]}, "Entry 0 is 'fast'."),
        ({"shape": (1, 2, 3)}, "demo.shape = (1, 2, 3); use 2 integers ≥ 1"),
        ({"flag": 1}, "demo.flag = 1 (a int); use True or False."),
    ],
)
def test_a_wrong_value_names_the_binding(kwargs, expected):
    with pytest.raises(UsageError) as error:
        demo(**kwargs)
    assert expected in str(error.value)


def test_undeclared_parameters_pass_unchecked():
    assert demo(free="anything")[-1] == "anything"


def test_a_class_names_the_instance_class():
    assert Child(seed=3).seed == 3
    with pytest.raises(UsageError, match=r"^Child\.seed = -1; "):
        Child(seed=-1)
    with pytest.raises(UsageError, match=r"^Base\.seed = 'x' \(a str\)"):
        Base(seed="x")


def test_a_kind_called_with_options_is_a_new_kind():
    small = settings.Int(low=2, high=4)
    assert small.apply(3, "x") == 3
    with pytest.raises(UsageError, match=r"use an integer in \[2, 4\]"):
        small.apply(5, "x")
    assert settings.Int.apply(-7, "x") == -7  # the original is unchanged


@gin.configurable("gin_demo")
@settings.declared("gin_demo")
def gin_demo(count: settings.PositiveInt = 3):
    return count


def test_a_macro_that_set_the_value_is_named():
    with gin.unlock_config():
        gin.clear_config()
        gin.parse_config("COUNT = 2.5\ngin_demo.count = %COUNT")
    try:
        with pytest.raises(UsageError) as error:
            gin_demo()
        assert str(error.value).startswith("COUNT (gin_demo.count) = 2.5")
    finally:
        gin.clear_config()


def _configurables():
    """(gin name, callable whose signature gin binds, parameters gin may
    not bind) of zapkeras' own configurables (gin has no public listing;
    its registry is read)."""
    for _, configurable in gin.config._REGISTRY.items():
        if configurable.module.startswith("zapkeras"):
            target = configurable.wrapped
            if inspect.isclass(target):
                target = target.__init__
            yield configurable.name, target, configurable.denylist or ()


def test_every_number_and_flag_parameter_is_declared():
    undeclared = []
    for name, target, denied in _configurables():
        for parameter in inspect.signature(target).parameters.values():
            if parameter.name in denied:
                continue  # passed by the runner (e.g. --seed), not by gin
            number = isinstance(parameter.default, (bool, int, float))
            if number and not isinstance(parameter.annotation, settings.Kind):
                undeclared.append(f"{name}.{parameter.name}")
    assert not undeclared, undeclared


def test_every_declared_configurable_checks_its_arguments():
    for name, target, _ in _configurables():
        declared = [
            p
            for p in inspect.signature(target).parameters.values()
            if isinstance(p.annotation, settings.Kind)
        ]
        if declared:
            assert hasattr(target, "__wrapped__"), f"{name} is not @declared"
