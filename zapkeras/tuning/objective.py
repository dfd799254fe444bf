"""`--objective`: a key path in each trial's results.json, checked before
any trial against the paths the config's runner declares
(`runner.result_paths()`, from each protocol's `result_keys()`), where a
part written `<name>` stands for names known only at run time."""

import re

from zapkeras.errors import UsageError

_PLACEHOLDER = re.compile(r"<[^<>]+>")


def matches(path, key):
    """Whether `key` ('transfer.sequential.by_lr.0.001.test_accuracy') is
    the declared `path`, each `<name>` part matching any text."""
    parts = _PLACEHOLDER.split(path)
    pattern = ".+".join(re.escape(p) for p in parts)
    return re.fullmatch(pattern, key) is not None


def check_syntax(key):
    if not all(key.split(".")):
        raise UsageError(
            f"--objective={key!r} is not a key path; name a number in "
            "results.json by its keys joined with dots, e.g. "
            "transfer.sequential.test_accuracy."
        )


def check(key, paths, config, binding=None):
    """Raises a UsageError listing `paths` unless `key` is one of them.

    `config` names the gin config (for the message); `binding`, a swept
    value's binding, when only the config with it lacks the key.
    """
    if any(matches(path, key) for path in paths):
        return
    listed = "".join(f"\n  {path}" for path in paths) or " none"
    where = f"{config} with {binding!r}" if binding else config
    note = (
        "\n(<name> stands for a name known when the run starts, e.g. a "
        "layer's)"
        if any(_PLACEHOLDER.search(path) for path in paths)
        else ""
    )
    raise UsageError(
        f"--objective={key!r} is not a number the results.json of "
        f"{where} will hold; choose one it will:{listed}{note}"
    )
