"""What every command (zapkeras.train, zapkeras.tune, each pipeline) does
around its main: a short --help, and Ctrl-C or SIGTERM ending it with one
line and exit status 130 / 143 instead of a traceback.

A command defines its own flags in its own module, adopts shared ones with
`flags.adopt_module_key_flags(module)` (absl's "key flags" of the main
module) and runs with `command.run(main, ...)`. Then `--help` (also `-?`,
`--helpshort`) lists exactly those flags, one line each, and exits 0;
`--helpfull` keeps absl's full listing (absl's, TensorFlow's, ...) and
exits 0 too. Importing this module installs the help flags.

SIGINT and SIGTERM raise `Stopped` (a KeyboardInterrupt) in the main
thread, as Ctrl-C always did, so the run unwinds where it was and its
checkpoints stay as they were last written; a second signal ends the
program at once. The command's `on_stop` blocks say where it stopped and
how to resume.
"""

import contextlib
import signal
import sys

from absl import app
from absl import flags

from zapkeras import quiet
from zapkeras.outputs import console

FLAGS = flags.FLAGS
_NAME_WIDTH = 24  # the flag-and-default column of --help


_MULTI_NOTE = "; repeat this option to specify a list of values"  # absl's


def flag_line(flag):
    """`--name=default  help` on one line (absl's --helpfull wraps it)."""
    text = " ".join((flag.help or "").split()).replace(_MULTI_NOTE, "")
    if flag.boolean:
        head = f"--[no]{flag.name}"
        if flag.default:
            text += " (on by default)"
    elif flag.default is None or flag.default == []:
        head = f"--{flag.name}"
    else:
        head = f"--{flag.name}={flag.serializer.serialize(flag.default)}"
    if isinstance(flag, flags.MultiFlag):
        text += " (repeatable)"
    return f"  {head.ljust(_NAME_WIDTH)}  {text}".rstrip()


_main_module = "__main__"  # the module whose main `run` runs


def short_help():
    """The first paragraph of the main module's docstring and its key
    flags (absl's sense: the ones it defines or adopts), one line each.
    The main module is `__main__` under `python -m` (absl names it by
    sys.argv[0]), or the module a console script imported."""
    module = sys.modules[_main_module]
    name = sys.argv[0] if _main_module == "__main__" else _main_module
    doc = (module.__doc__ or "").strip()
    lines = [doc.split("\n\n")[0] if doc else f"usage: {sys.argv[0]}", ""]
    lines += ["flags:"]
    lines += [flag_line(f) for f in FLAGS.get_key_flags_for_module(name)]
    lines += [
        "",
        "--helpfull: every flag (absl's, TensorFlow's ...); --verbosity=0: "
        "TensorFlow's start-up log too.",
    ]
    return "\n".join(lines)


class _Help(app.HelpFlag):
    """--help / -?: the command's own flags, exit status 0."""

    def __init__(self):
        super().__init__()
        self.allow_override = True  # replaces absl's --help

    def parse(self, arg):
        if self._parse(arg):
            print(short_help(), flush=True)
            sys.exit(0)


class _HelpShort(_Help):
    NAME = "helpshort"
    SHORT_NAME = None


class _HelpFull(app.HelpfullFlag):
    """--helpfull: absl's full listing, exit status 0."""

    def __init__(self):
        super().__init__()
        self.allow_override = True

    def parse(self, arg):
        if self._parse(arg):
            app.usage(writeto_stdout=True)
            sys.exit(0)


def _install_help():
    app.define_help_flags()  # absl's, so that app.run keeps ours
    for flag in (_Help(), _HelpShort(), _HelpFull()):
        flags.DEFINE_flag(flag, module_name="absl.app")


_install_help()


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `where` (set by `on_stop`) says where the
    run got to and how to resume it."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    del frame
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)  # a second signal ends it at once
    raise Stopped(signum)


@contextlib.contextmanager
def on_stop(describe):
    """A signal in the block is reported with `describe()`: where the run
    stopped and how to resume, e.g. "runs/x keeps its last checkpoint;
    run the same command again to resume"."""
    try:
        yield
    except KeyboardInterrupt as e:
        if getattr(e, "where", None) is None:
            e.where = describe()
        raise


def exit_stopped(program, error):
    """Prints the one line for a stop and exits 128 + the signal number."""
    signum = getattr(error, "signum", signal.SIGINT)
    where = getattr(error, "where", None) or (
        "run the same command again to resume"
    )
    console.end_line()  # a progress bar's line ends where it stopped
    print(
        f"{program}: stopped by {signal.Signals(signum).name}; {where}.",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(128 + signum)


def run(main, program, flags_parser=app.parse_flags_with_usage):
    """app.run(main, flags_parser=...), with SIGINT and SIGTERM ending the
    program with one line (`exit_stopped`) and status 130 / 143, and
    TensorFlow's start-up log held back (zapkeras/quiet.py) from the end of
    flag parsing to main: absl's init callbacks run there, and one of
    TensorFlow's looks for GPUs."""
    global _main_module
    _main_module = main.__module__
    init = contextlib.ExitStack()

    def parse(argv):
        args = flags_parser(argv)
        init.enter_context(quiet.startup_log(python_through=False))
        return args

    def start(argv):
        init.close()
        return main(argv)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stop)
    try:
        with init:
            app.run(start, flags_parser=parse)
    except KeyboardInterrupt as e:
        exit_stopped(program, e)
