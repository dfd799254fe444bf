"""An output directory's identity: which run it holds.

A run records at its start, before any training, what identifies it in
OUTPUT_DIR/.zapkeras/identity.json: its `--seed` and every gin binding after
parsing (each file's, each `--gin_param`, macros included, one entry per
`scope/configurable.parameter` or macro, as `gin.config_str()` lists them;
comments, order and layout of the gin files do not count, a parameter bound
to its default value does). OUTPUT_DIR/
config.gin keeps its meaning: the operative config, written as the run ends.

Started again in a directory that holds a run, a run resumes only when its
identity equals the recorded one; otherwise it stops with a `UsageError`
listing the settings that differ (old → new) before anything is written or
loaded. Not part of the identity: `--data_dir` (where the data lives),
`--strategy` and the replica count (N replicas compute what one device
computes with the same global batch, and checkpoints restore across
strategies), the config's file name and the zapkeras version. A directory
without a record (none yet, or written before runs recorded identities) is
taken as it is.

`--overwrite` deletes the previous run's own files (`RUN_ENTRIES`) and
starts afresh; anything else in the directory (a pipeline's log and queue
files, a tuner trial's train.log, other workers' `workers/`) stays.
"""

import json
import os
import shutil

import gin
from zapkeras.errors import UsageError
from zapkeras.outputs import files

RECORD_DIR = ".zapkeras"
RECORD = os.path.join(RECORD_DIR, "identity.json")
# What a run writes into its output directory (README "Outputs").
RUN_ENTRIES = (
    "config.gin",
    "results.json",
    "tensorboard",
    "checkpoints",
    "curves",
    "plots",
    RECORD_DIR,
)
SEED = "--seed"
UNSET = "(unset)"
MAX_LINES = 8  # differences listed in a message


def _bindings(config):
    """{name: value text} of a `gin.config_str()`: every binding and macro,
    comments and blank lines dropped, a continued value joined."""
    bindings, name, value = {}, None, []
    for line in config.splitlines() + [""]:
        if name is not None and line.startswith(" "):
            value.append(line.strip())
            continue
        if name is not None:
            bindings[name] = " ".join(value)
            name = None
        text = line.strip()
        if not text or text.startswith("#") or " = " not in text:
            continue  # comments, blank lines, import statements
        key, rest = text.split(" = ", 1)
        if rest == "\\":
            name, value = key, []
        else:
            bindings[key] = rest
    return bindings


def identity(seed):
    """The current run's identity: `seed` and the parsed gin bindings."""
    config = gin.config_str(max_line_length=10**6)
    return {SEED: repr(int(seed)), **_bindings(config)}


def recorded(output_dir):
    """The identity recorded in `output_dir`, or None."""
    record = files.read_json(os.path.join(output_dir, RECORD))
    return None if record is None else record["identity"]


def differences(old, new):
    """['name: old → new', …] for every setting that differs, sorted (the
    seed first)."""
    names = sorted(set(old) | set(new), key=lambda n: (n != SEED, n))
    return [
        f"{n}: {old.get(n, UNSET)} → {new.get(n, UNSET)}"
        for n in names
        if old.get(n) != new.get(n)
    ]


def summary(lines, indent="  "):
    """The first `MAX_LINES` of `lines`, indented, and how many more."""
    shown = [indent + line for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(f"{indent}… and {len(lines) - MAX_LINES} more")
    return "\n".join(shown)


def check(output_dir, current):
    """The differences between the run `output_dir` holds and `current`
    ([] when it holds none or the same one). Reads only."""
    old = recorded(output_dir)
    return [] if old is None else differences(old, current)


def refusal(output_dir, lines):
    """The UsageError for a directory holding another run."""
    return UsageError(
        f"--output_dir={output_dir!r} holds a run with other settings "
        f"({RECORD} there; old → new):\n{summary(lines)}\n"
        "Rerun with its settings to resume it, choose another "
        "--output_dir, or add --overwrite to delete that run and start "
        "afresh."
    )


def clear(output_dir):
    """Deletes the run's own entries in `output_dir`; returns their names."""
    removed = []
    for name in RUN_ENTRIES:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        else:
            continue
        removed.append(name)
    return removed


def record(output_dir, current):
    """Writes `current` as the identity of the run in `output_dir`."""
    path = os.path.join(output_dir, RECORD)
    if files.read_json(path, {}).get("identity") != current:
        files.write_atomic(
            path, json.dumps({"identity": current}, indent=1) + "\n"
        )
