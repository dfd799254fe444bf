"""The `--tune_param` grammar: which gin binding a sweep varies, over what.

    NAME=choice(a, b, c)     one of the values: Python literals (0.1, 'adam',
                             True, None, (1, 2)) or gin references
                             (@Zapping(), %WIDTH), bound as written
    NAME=range(lo, hi)       a number in [lo, hi]; integers if both are
    NAME=log_range(lo, hi)   the same, sampled uniformly in log space

NAME is a gin binding target (`asb_pretraining.inner_learning_rate`,
`iid_zap/iid_pretraining.learning_rate`) or a macro (`WIDTH`). Choices of
one plain type (all ints, all floats, all bools or all strings) reach
keras-tuner as those values, so the Bayesian oracle sees numbers as ordered;
any other mix is tuned as the categorical set of its gin texts.
"""

import ast
import dataclasses
import io
import re
import tokenize

import keras_tuner

from zapkeras.errors import UsageError

KINDS = ("choice", "range", "log_range")
_NAME = re.compile(r"[A-Za-z_][\w.]*(/[A-Za-z_][\w.]*)*")
_SPEC = re.compile(r"\s*([^=]*?)\s*=\s*(\w+)\s*\((.*)\)\s*", re.DOTALL)
_PLAIN_TYPES = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class TuneParam:
    """One swept binding.

    Attributes:
      name: the gin binding target or macro.
      kind: 'choice', 'range' or 'log_range'.
      values: a choice's keras-tuner values, or a range's (lo, hi).
      texts: a choice's gin text for each value (empty for ranges).
      spec: the flag as given, for messages.
    """

    name: str
    kind: str
    values: tuple
    texts: tuple
    spec: str

    @property
    def is_macro(self):
        return "." not in self.name

    @property
    def is_int(self):
        return self.kind != "choice" and all(
            type(v) is int for v in self.values
        )

    def declare(self, hyperparameters):
        """Adds this parameter to a keras_tuner.HyperParameters space."""
        if self.kind == "choice":
            return hyperparameters.Choice(self.name, list(self.values))
        sampling = "log" if self.kind == "log_range" else "linear"
        make = hyperparameters.Int if self.is_int else hyperparameters.Float
        return make(self.name, *self.values, sampling=sampling)

    def gin_text(self, value):
        if self.kind == "choice":
            return self.texts[self.values.index(value)]
        return repr(int(value) if self.is_int else float(value))

    def binding(self, value):
        """The gin binding a trial with this `value` runs with."""
        return f"{self.name} = {self.gin_text(value)}"


def _fail(spec, problem):
    raise UsageError(
        f"--tune_param={spec!r}: {problem}. The form is "
        "NAME=choice(a,b,...), NAME=range(lo,hi) or NAME=log_range(lo,hi), "
        "e.g. --tune_param='iid_pretraining.learning_rate=choice(1e-3,1e-4)'."
    )


def _split_arguments(spec, text):
    """Splits at top-level commas, respecting brackets and quotes."""
    text = text.replace("\n", " ")
    parts, depth, start = [], 0, 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type != tokenize.OP:
                continue
            if token.string in "([{":
                depth += 1
            elif token.string in ")]}":
                depth -= 1
            elif token.string == "," and depth == 0:
                parts.append(text[start : token.start[1]])
                start = token.end[1]
    except tokenize.TokenError:
        _fail(spec, "unbalanced brackets or quotes in the values")
    parts = [p.strip() for p in [*parts, text[start:]]]
    if not all(parts):
        _fail(spec, "an empty value")
    return parts


def _literal(spec, text):
    """(value, is_literal) for one value's text."""
    if text[0] in "@%":
        return text, False  # a gin reference, checked by gin up front
    try:
        return ast.literal_eval(text), True
    except (ValueError, SyntaxError):
        _fail(
            spec,
            f"{text!r} is neither a Python literal (0.1, 'adam', True, None) "
            "nor a gin reference (@name(), %MACRO); quote strings",
        )


def _choice(spec, name, texts):
    parsed = [_literal(spec, t) for t in texts]
    values = [v for v, _ in parsed]
    types = {type(v) for v in values}
    plain = all(is_literal for _, is_literal in parsed) and (
        len(types) == 1 and types <= set(_PLAIN_TYPES)
    )
    if not plain:
        values = list(texts)
    if len(set(values)) < len(values):
        _fail(spec, "a value is repeated")
    return TuneParam(name, "choice", tuple(values), tuple(texts), spec)


def _range(spec, name, kind, texts):
    if len(texts) != 2:
        _fail(spec, f"{kind} takes two numbers, lo and hi")
    values = [_literal(spec, t)[0] for t in texts]
    if not all(
        type(v) in (int, float) and v == v and abs(v) != float("inf")
        for v in values
    ):
        _fail(spec, f"{kind} bounds must be finite numbers")
    lo, hi = values
    if not lo < hi:
        _fail(spec, f"lo = {lo!r} must be smaller than hi = {hi!r}")
    if kind == "log_range" and lo <= 0:
        _fail(spec, "log_range bounds must be positive")
    if not all(type(v) is int for v in values):
        lo, hi = float(lo), float(hi)
    return TuneParam(name, kind, (lo, hi), (), spec)


def parse_tune_param(spec):
    """Parses one --tune_param value into a TuneParam."""
    match = _SPEC.fullmatch(spec)
    if not match:
        _fail(spec, "not of the form NAME=kind(values)")
    name, kind, arguments = match.groups()
    if not _NAME.fullmatch(name):
        _fail(
            spec,
            f"{name!r} is not a gin binding target (configurable.parameter, "
            "scope/configurable.parameter) or macro name",
        )
    if kind not in KINDS:
        _fail(spec, f"unknown kind {kind!r}; use {', '.join(KINDS)}")
    texts = _split_arguments(spec, arguments)
    if kind == "choice":
        return _choice(spec, name, texts)
    return _range(spec, name, kind, texts)


def parse_tune_params(specs):
    """Parses every --tune_param; at least one, each NAME once."""
    if not specs:
        raise UsageError(
            "--tune_param is required: name what to sweep, e.g. "
            "--tune_param='iid_pretraining.learning_rate=choice(1e-3,1e-4)'."
        )
    params = [parse_tune_param(s) for s in specs]
    names = [p.name for p in params]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(
                f"--tune_param names {name!r} more than once; give each "
                "binding one --tune_param listing all its values."
            )
    return params


def search_space(params):
    """The keras_tuner.HyperParameters space of the swept bindings."""
    hyperparameters = keras_tuner.HyperParameters()
    for param in params:
        param.declare(hyperparameters)
    return hyperparameters
