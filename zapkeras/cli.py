"""Command-line plumbing shared by `zapkeras.train` and `zapkeras.tune`.

The train flags (README "Configuration"), gin parsing with unknown names
failing loudly, and the rule that a user mistake ends the program with a
short message and exit status 2, never a traceback; `run` adds the short
--help and the one-line stop on SIGINT/SIGTERM (zapkeras/command.py).

A command built on these flags (zapkeras.train, zapkeras.tune) calls
`flags.adopt_module_key_flags(cli)` so that its --help lists them, defines
its own flags in its own module, and runs with `cli.run(main)`.
"""

import datetime
import os
import sys
import tokenize

from absl import flags

import gin
from zapkeras import command
from zapkeras import configs
from zapkeras.errors import UsageError

flags.DEFINE_multi_string(
    "gin_file",
    None,
    "Gin config file(s), or shipped configs by name (omniglot/asb_zap.gin);"
    " they compose left to right.",
)
# data_dir, output_dir and gin_param are pipelines.cli's names too: either
# definition may override the other in a process that imports both.
_SHARED = dict(allow_override=True)
flags.DEFINE_multi_string(
    "gin_param", [], "Gin binding(s), applied after the files.", **_SHARED
)
flags.DEFINE_string(
    "output_dir",
    None,
    "Where outputs go; default runs/<config-name>-<YYYYmmdd-HHMMSS>.",
    **_SHARED,
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Delete the run --output_dir holds and start afresh (without it, a "
    "run with other settings there is an error; the same settings resume).",
)
flags.DEFINE_string(
    "data_dir",
    None,
    "Dataset root; default $ZAPKERAS_DATA_DIR, else ~/tensorflow_datasets.",
    **_SHARED,
)
flags.DEFINE_integer(
    "seed", 0, "Fixes data order, init, resets, sampling.", lower_bound=0
)
flags.DEFINE_string(
    "strategy",
    "auto",
    "tf.distribute strategy: auto|one|mirrored|multi_worker.",
)

FLAGS = flags.FLAGS


def fail(message):
    """Prints a user-mistake message and exits with status 2."""
    print(f"zapkeras: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_flags(argv):
    """absl flags parser that turns flag errors into exit status 2."""
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        fail(f"{e}\nRun with --help to list the flags.")
    if len(rest) > 1:
        fail(f"unexpected arguments {rest[1:]}; every setting is a --flag.")
    if not FLAGS.gin_file:
        fail("--gin_file is required, e.g. --gin_file=quickstart.gin.")
    return rest


def main_guard(fn):
    """Runs `fn()`, reporting a UsageError as a message with exit status 2."""
    try:
        return fn()
    except UsageError as e:
        # gin appends "In call to configurable ..." lines: the message
        # already names the setting.
        lines = str(e).splitlines()
        fail("\n".join(x for x in lines if "In call to configurable" not in x))


def run(main):
    """`app.run(main)` with `parse_flags`, the short --help (the main
    module's key flags) and SIGINT/SIGTERM ending the program with one line
    and exit status 130/143 (`command.run`; `command.on_stop` blocks say
    where it stopped)."""
    command.run(main, "zapkeras", flags_parser=parse_flags)


def resume_hint(output_dir):
    """How to resume a run stopped in `output_dir`: the same command, with
    --output_dir when it was left to its time-stamped default."""
    if FLAGS["output_dir"].present:
        return "run the same command again to resume"
    return f"run the same command with --output_dir={output_dir} to resume"


def gin_paths(gin_files):
    """Each --gin_file as a path: a local file, or the shipped config it
    names (`omniglot/asb_zap.gin`); a UsageError when it is neither."""
    found = []
    for path in gin_files:
        full = configs.find(path)
        if full is None:
            raise UsageError(
                f"--gin_file={path!r} is neither a file nor a shipped "
                "config; give a path, or a shipped config's name such as "
                "quickstart.gin or omniglot/asb_zap.gin."
            )
        found.append(full)
    return found


def parse_gin(gin_files, bindings):
    """Parses gin files and bindings; unknown names are a UsageError."""
    import zapkeras.gin_imports  # noqa: F401  (registers configurables)

    gin_files = gin_paths(gin_files)
    gin.clear_config()
    for path in configs.search_paths(gin_files):
        gin.add_config_file_search_path(path)
    try:
        with configs.quiet_include_misses():
            gin.parse_config_files_and_bindings(
                gin_files, bindings, skip_unknown=False
            )
    except (
        ValueError,
        KeyError,
        SyntaxError,
        OSError,
        TypeError,
        tokenize.TokenError,  # an unclosed bracket in a binding
    ) as e:
        given = "".join(f"\n  --gin_param={b!r}" for b in bindings)
        raise UsageError(
            f"gin config: {e}\nCheck the configurable and parameter names "
            "against the gin/ configs and the function signatures, and the "
            f"syntax of the bindings given:{given or ' (none)'}"
        ) from None


def experiment_name(gin_files):
    """'omniglot/iid_zap' for gin/omniglot/iid_zap.gin."""
    path = os.path.abspath(configs.find(gin_files[-1]) or gin_files[-1])
    parts = os.path.splitext(path)[0].split(os.sep)
    if "gin" in parts:
        parts = parts[len(parts) - parts[::-1].index("gin") :]
    else:
        parts = parts[-1:]
    return "/".join(parts)


def default_output_dir(gin_files):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = experiment_name(gin_files).replace("/", "_")
    return os.path.join("runs", f"{name}-{stamp}")
