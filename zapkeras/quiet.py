"""TensorFlow's C++ start-up log, kept off the terminal unless asked for.

TensorFlow writes its start-up notes (oneDNN "custom operations are on" and
"Could not find cuda drivers", each twice, cpu_feature_guard, and on a
machine without a GPU "failed call to cuInit") through absl's C++ logging
before it reads TF_CPP_MIN_LOG_LEVEL, so that variable alone does not
silence them. zapkeras catches what C++ writes to the standard error (file
descriptor 2) while TensorFlow is imported (`install`, from
zapkeras/__init__.py) and while a run first looks for its devices
(`startup_log`), then writes back every line except the log records below
the level asked for (`level`). `command.run` does the same between
parsing the flags and main, where absl runs its init callbacks (one of
TensorFlow's lists the GPUs: cuInit).
"""

import contextlib
import importlib.util
import os
import re
import sys
import tempfile

VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
SEVERITIES = "IWEF"  # TensorFlow's levels 0-3: INFO, WARNING, ERROR, FATAL
# absl's "I0000 00:00:1796231522.922932   12352 port.cc:153] ..." and
# TensorFlow's own "2025-09-17 14:44:05.157831: I external/...".
_RECORD = re.compile(r"([IWEF])\d{4} |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) ")
_ABSL_NOTE = "WARNING: All log messages before absl::InitializeLog()"
_VERBOSITY = re.compile(r"--?(?:verbosity|v)(?:=(-?\d+))?")


def _verbosity(argv):
    """absl's --verbosity/-v as given on the command line, or None."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        match = _VERBOSITY.fullmatch(arg)
        if match and match[1] is not None:
            return int(match[1])
        if match and i + 1 < len(args):
            with contextlib.suppress(ValueError):
                return int(args[i + 1])
    return None


def level(environ=None, argv=None):
    """The lowest severity (0 INFO .. 3 FATAL) shown at start-up: the
    user's TF_CPP_MIN_LOG_LEVEL if below 2, else --verbosity's (0 or more:
    INFO, -1: WARNING, -2: ERROR), else 3: nothing but fatal errors."""
    environ = os.environ if environ is None else environ
    value = environ.get(VARIABLE, "")
    if value.strip().isdigit() and int(value) < 2:
        return int(value)
    verbosity = _verbosity(sys.argv[1:] if argv is None else argv)
    if verbosity is not None:
        return min(max(-verbosity, 0), 3)
    return 3


def keep(text, min_level):
    """`text` without the log records (and their continuation lines) below
    `min_level`."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _RECORD.match(line)
        if match:
            severity = SEVERITIES.index(match[1] or match[2])
            dropping = severity < min_level
        elif line.startswith(_ABSL_NOTE):
            dropping = min_level > 0
        elif not line.strip():
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


class _Through:
    """sys.stderr while C++'s output is held back: writes go to `during`
    (the terminal), and after the block to `after` (sys.stderr as it was),
    so a logging handler made in the block keeps a working stream."""

    def __init__(self, during, after):
        self.during, self.after = during, after

    def write(self, text):
        return (self.during or self.after).write(text)

    def __getattr__(self, name):
        return getattr(self.during or self.after, name)


@contextlib.contextmanager
def startup_log(min_level=None, python_through=True):
    """Holds back what C++ writes to the standard error in the block, then
    writes it out without the records below `min_level` (default
    `level()`). Python's sys.stderr writes straight through, unless
    `python_through` is False (then it is held back and written out too,
    and sys.stderr stays the same object, as faulthandler needs)."""
    min_level = level() if min_level is None else min_level
    if min_level == 0:
        yield
        return
    python_stderr = sys.stderr
    python_stderr.flush()
    original = os.dup(2)
    with tempfile.TemporaryFile() as held, open(
        original, "w", closefd=False, errors="backslashreplace"
    ) as straight:
        os.dup2(held.fileno(), 2)
        through = _Through(straight, python_stderr)
        if python_through:
            sys.stderr = through
        try:
            yield
        finally:
            sys.stderr.flush()
            through.during = None
            sys.stderr = python_stderr
            os.dup2(original, 2)
            os.close(original)
            held.seek(0)
            python_stderr.write(
                keep(held.read().decode(errors="replace"), min_level)
            )
            python_stderr.flush()


class _QuietImport:
    """Meta-path hook: runs the import of `tensorflow` in `startup_log`
    (then steps aside; a mere find_spec does not use it up)."""

    _finding = False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "tensorflow" or cls._finding:
            return None
        cls._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            cls._finding = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_quietly(module):
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(cls)
            with startup_log():
                exec_module(module)

        spec.loader.exec_module = exec_quietly
        return spec


def install():
    """Quiets the import of TensorFlow, whoever imports it first."""
    if "tensorflow" not in sys.modules and _QuietImport not in sys.meta_path:
        sys.meta_path.insert(0, _QuietImport)
