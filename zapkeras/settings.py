"""Declared settings: a configurable states each parameter's kind once,
in its signature, and `declared` checks every value given for it.

    @gin.configurable("iid_pretraining")
    @settings.declared("iid_pretraining")
    class IidPretraining(Protocol):
        def __init__(self, *, epochs: settings.PositiveInt = 10,
                     learning_rate: settings.PositiveNumber = 1e-3): ...

A value of the wrong kind or out of range raises `UsageError` naming the
binding (`iid_pretraining.epochs`) and, where a gin macro set it, the
macro (`PRETRAIN_EPOCHS (iid_pretraining.epochs) = 2.5; use an integer
≥ 1, e.g. 10.`); the body receives the value normalised (an int, a float,
a tuple, the matching choice). The message's example is the parameter's
default unless the kind names one. Each kind is a check of
`zapkeras.validate`; a kind called with options gives a new kind
(`Fraction(low_open=True, note="…")`). Checks that relate several
parameters stay in the body.
"""

import functools
import inspect

from zapkeras import validate

__all__ = [
    "Bool",
    "Fraction",
    "Int",
    "Kind",
    "LearningRates",
    "Maybe",
    "NonNegativeInt",
    "NonNegativeNumber",
    "Number",
    "OneOf",
    "PositiveInt",
    "PositiveInts",
    "PositiveNumber",
    "Probability",
    "Seed",
    "Sequence",
    "declared",
]


class Kind:
    """A parameter's kind: a check `check(value, setting, **options)` of
    `zapkeras.validate`. Calling a kind with options gives a new kind with
    those options added."""

    def __init__(self, name, check, **options):
        self.name, self.check, self.options = name, check, options
        accepts = inspect.signature(check).parameters
        self._takes_example = "example" in accepts

    def __call__(self, **options):
        return Kind(self.name, self.check, **{**self.options, **options})

    def __repr__(self):
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({shown})" if shown else self.name

    def apply(self, value, setting, default=None):
        """`value` checked and normalised; UsageError naming `setting`."""
        options = dict(self.options)
        if self._takes_example and "example" not in options:
            if default is not None and default is not inspect.Parameter.empty:
                options["example"] = default
        return self.check(value, setting, **options)


def _one_of(value, setting, *, choices, hint=None):
    return validate.one_of(value, choices, setting, hint=hint)


def _maybe(value, setting, *, kind, example=None):
    """None, or a value of `kind`."""
    if value is None:
        return None
    return kind.apply(value, setting, example)


def _sequence(value, setting, *, kind, **options):
    return validate.sequence(
        value, setting, lambda v, s: kind.apply(v, s), **options
    )


Int = Kind("Int", validate.integer)
PositiveInt = Kind("PositiveInt", validate.positive_int)
NonNegativeInt = Kind("NonNegativeInt", validate.non_negative_int)
Number = Kind("Number", validate.number)
PositiveNumber = Kind("PositiveNumber", validate.positive_number)
NonNegativeNumber = Kind("NonNegativeNumber", validate.non_negative_number)
Fraction = Kind("Fraction", validate.fraction)
Probability = Kind("Probability", validate.probability)
Bool = Kind("Bool", validate.boolean)
Seed = Kind("Seed", validate.seed)
LearningRates = Kind("LearningRates", validate.learning_rates)
PositiveInts = Kind("PositiveInts", validate.positive_ints)


def OneOf(*choices, hint=None):
    """One of `choices` (`hint` explains them in the message)."""
    return Kind("OneOf", _one_of, choices=choices, hint=hint)


def Maybe(kind):
    """None, or a value of `kind`."""
    return Kind(f"Maybe[{kind!r}]", _maybe, kind=kind)


def Sequence(kind, *, what, **options):
    """A sequence of values of `kind`, as `validate.sequence` (`what`
    describes it; `length`, `min_length`, `example`, `note`)."""
    return Kind(
        f"Sequence[{kind!r}]", _sequence, kind=kind, what=what, **options
    )


def _kinds(function):
    signature = inspect.signature(function)
    kinds = {
        name: parameter.annotation
        for name, parameter in signature.parameters.items()
        if isinstance(parameter.annotation, Kind)
    }
    defaults = {name: signature.parameters[name].default for name in kinds}
    return signature, kinds, defaults


def _declare(function, owner):
    """`function` checking its declared parameters; `owner` names them
    (None: the class of the first argument, for methods)."""
    signature, kinds, defaults = _kinds(function)
    if not kinds:
        return function

    @functools.wraps(function)
    def checked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        prefix = owner or type(args[0]).__name__
        for name, kind in kinds.items():
            if name in bound.arguments:
                bound.arguments[name] = kind.apply(
                    bound.arguments[name], f"{prefix}.{name}", defaults[name]
                )
        return function(*bound.args, **bound.kwargs)

    return checked


def declared(target=None, /, name=None):
    """Checks a function's or a class's `__init__`'s declared parameters
    on every call. `name` is the configurable's gin name; by default the
    function's name, or for a class the name of the instance's class (so
    a subclass's message names the subclass).

    Use as `@declared`, `@declared("gin_name")` or `@declared(name=…)`.
    """
    if isinstance(target, str):
        target, name = None, target
    if target is None:
        return functools.partial(declared, name=name)
    if inspect.isclass(target):
        target.__init__ = _declare(target.__init__, name)
        return target
    return _declare(target, name or target.__name__)
