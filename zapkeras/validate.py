"""Shared checks of user settings, one for each kind of value.

Every configurable checks its arguments here before doing any work. Each
check takes the value and the name the user sets it by, the gin binding
("SelectiveWeightReinit.factor") or macro ("WIDTH"). It returns the value
normalised (int, float, tuple, or the matching choice); otherwise it
raises `UsageError` with a message that names the setting and says what
to give, with an example. A value of the wrong type (WIDTH = 'abc',
PRETRAIN_EPOCHS = 2.5, TRANSFER_LRS = 0.001, Zapping.fraction = 'half')
gets the same kind of message as one out of range, never a TypeError from
deeper down. The rules:

- integers: Python and numpy ints; not bools, floats (2.0 included) or
  strings;
- numbers: Python and numpy ints and floats, finite; not bools or strings;
- sequences: lists, tuples and 1-D numpy arrays; not strings, sets, dicts
  or a single number.
"""

import math
import re
from collections import abc

import numpy as np

import gin
from zapkeras.errors import UsageError

__all__ = [
    "boolean",
    "fraction",
    "integer",
    "learning_rates",
    "non_negative_int",
    "non_negative_number",
    "number",
    "one_of",
    "positive_int",
    "positive_ints",
    "positive_number",
    "probability",
    "seed",
    "sequence",
]

_REPR_LIMIT = 80
_BINDING = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def _show(value):
    """`value` as a message shows it: repr, shortened; a str verbatim
    for examples (see `_example`)."""
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 1] + "…"
    return text


def _example(example):
    """An example as text: a str is shown as written ("1e-5"), anything
    else by repr."""
    return example if isinstance(example, str) else _show(example)


def _fail(value, setting, what, *, example=None, note=None, typed=False):
    """Raises the one message form: `setting = value; use what, e.g. …`."""
    kind = ""
    if typed and value is not None:
        kind = f" (a {type(value).__name__})"
    text = f"{_with_macro(setting)} = {_show(value)}{kind}; use {what}"
    if example is not None:
        text += f", e.g. {_example(example)}"
    text += "."
    if note:
        text += f" {note}"
    raise UsageError(text)


def _with_macro(setting):
    """`setting`, led by the macro that set it where the gin config binds
    it to one: 'PRETRAIN_EPOCHS (iid_pretraining.epochs)'."""
    if not _BINDING.fullmatch(setting):
        return setting
    try:
        value = gin.query_parameter(setting)
    except (ValueError, KeyError):
        return setting
    if isinstance(value, gin.config.ConfigurableReference):
        text = str(value)
        if text.startswith("%"):
            return f"{text[1:]} ({setting})"
    return setting


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not _is_bool(value)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        _is_bool(value)
    )


def _bound(x):
    return f"{x:g}" if isinstance(x, float) else str(x)


def range_text(noun, low, high, low_open, high_open):
    """'an integer ≥ 1', 'a number in (0, 1]', … (None: unbounded)."""
    if low is None and high is None:
        return noun
    if high is None:
        return f"{noun} {'>' if low_open else '≥'} {_bound(low)}"
    if low is None:
        return f"{noun} {'<' if high_open else '≤'} {_bound(high)}"
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    return f"{noun} in {left}{_bound(low)}, {_bound(high)}{right}"


def _inside(x, low, high, low_open, high_open):
    if low is not None and (x <= low if low_open else x < low):
        return False
    if high is not None and (x >= high if high_open else x > high):
        return False
    return True


def integer(value, setting, *, low=None, high=None, example=None, note=None):
    """`value` as an int in [low, high] (None: unbounded)."""
    what = range_text("an integer", low, high, False, False)
    if not _is_int(value):
        _fail(value, setting, what, example=example, note=note, typed=True)
    if not _inside(value, low, high, False, False):
        _fail(value, setting, what, example=example, note=note)
    return int(value)


def positive_int(value, setting, *, example=1, note=None):
    """`value` as an int ≥ 1."""
    return integer(value, setting, low=1, example=example, note=note)


def non_negative_int(value, setting, *, example=0, note=None):
    """`value` as an int ≥ 0."""
    return integer(value, setting, low=0, example=example, note=note)


def number(
    value,
    setting,
    *,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    example=None,
    note=None,
):
    """`value` as a finite float in the interval from low to high (None:
    unbounded; `low_open` / `high_open` exclude that end)."""
    what = range_text("a number", low, high, low_open, high_open)
    if not _is_number(value):
        _fail(value, setting, what, example=example, note=note, typed=True)
    if not math.isfinite(value) or not _inside(
        value, low, high, low_open, high_open
    ):
        _fail(value, setting, what, example=example, note=note)
    return float(value)


def positive_number(value, setting, *, example=1.0, note=None):
    """`value` as a float > 0."""
    return number(
        value, setting, low=0, low_open=True, example=example, note=note
    )


def non_negative_number(value, setting, *, example=0.0, note=None):
    """`value` as a float ≥ 0."""
    return number(value, setting, low=0, example=example, note=note)


def fraction(
    value,
    setting,
    *,
    low_open=False,
    high_open=False,
    example=0.5,
    note=None,
):
    """`value` as a float in [0, 1]; `low_open` / `high_open` exclude 0 /
    1, e.g. (0, 1] for a share that cannot be empty."""
    return number(
        value,
        setting,
        low=0,
        high=1,
        low_open=low_open,
        high_open=high_open,
        example=example,
        note=note,
    )


def probability(value, setting, *, example=0.5, note=None):
    """`value` as a float in [0, 1]."""
    return fraction(value, setting, example=example, note=note)


def _same(value, choice):
    """Equal and of the same kind: 1 is not True, '1' is not 1."""
    for kind in (_is_bool, lambda v: v is None, lambda v: isinstance(v, str)):
        if kind(value) != kind(choice):
            return False
    try:
        return bool(value == choice)
    except Exception:  # e.g. an array compared with a string
        return False


def one_of(value, choices, setting, *, hint=None):
    """The element of `choices` equal to `value` (so np.str_('a') gives
    'a' and 28.0 gives 28).

    `hint` replaces the message's default "use one of 'a', 'b'." when the
    choices need explaining ("use 'per_unit' (std √(2/fan_in)) or …").
    """
    choices = tuple(choices)
    for choice in choices:
        if _same(value, choice):
            return choice
    if hint is None:
        hint = f"use one of {', '.join(map(repr, choices))}."
    raise UsageError(f"{_with_macro(setting)} = {_show(value)}; {hint}")


def sequence(
    values,
    setting,
    item,
    *,
    what,
    length=None,
    min_length=0,
    example=None,
    note=None,
):
    """`values` as a tuple, each entry checked by `item(entry, name)`.

    Args:
      item: a check of this module taking (value, setting), e.g.
        `positive_int`; its result is the entry kept.
      what: the whole sequence described for the message, e.g. "a
        non-empty sequence of numbers > 0".
      length: the exact length required, or None.
      min_length: the least length (1: non-empty).
      example: shown after "e.g.".
    """
    scalar = not (
        (isinstance(values, abc.Sequence) and not isinstance(values, str))
        or (isinstance(values, np.ndarray) and values.ndim == 1)
    ) or isinstance(values, (bytes, bytearray))
    if scalar:
        extra = note
        if _is_number(values):
            one = f"One value is written ({_show(values)},)."
            extra = f"{one} {note}" if note else one
        _fail(values, setting, what, example=example, note=extra, typed=True)
    count = len(values)
    if count < min_length or (length is not None and count != length):
        _fail(values, setting, what, example=example, note=note)
    checked = []
    for i, entry in enumerate(values):
        try:
            checked.append(item(entry, f"{setting}[{i}]"))
        except UsageError:
            detail = f"Entry {i} is {_show(entry)}."
            _fail(
                values,
                setting,
                what,
                example=example,
                note=f"{detail} {note}" if note else detail,
            )
    return tuple(checked)


def positive_ints(values, setting, *, length=None, example=(1,), note=None):
    """`values` as a tuple of ints ≥ 1 (of `length` entries if given)."""
    what = "a sequence of integers ≥ 1"
    if length is not None:
        what = f"{length} integers ≥ 1"
    return sequence(
        values,
        setting,
        positive_int,
        what=what,
        length=length,
        example=example,
        note=note,
    )


def learning_rates(values, setting, *, example=(0.1, 0.01), note=None):
    """`values` as a non-empty tuple of floats > 0 (a single rate is an
    error that shows the one-element form)."""
    return sequence(
        values,
        setting,
        positive_number,
        what="a non-empty sequence of learning rates > 0",
        min_length=1,
        example=example,
        note=note,
    )


def seed(value, setting, *, none_means="the run's seed"):
    """`value` as an int ≥ 0, or None (which means `none_means`)."""
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        _fail(
            value,
            setting,
            "an integer ≥ 0",
            example=0,
            note=f"None takes {none_means}.",
            typed=not _is_int(value),
        )
    return int(value)


def boolean(value, setting):
    """`value` as a bool (Python or numpy); 0, 1 and strings are errors."""
    if not _is_bool(value):
        _fail(value, setting, "True or False", typed=True)
    return bool(value)
