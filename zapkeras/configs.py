"""The shipped gin configs: where they are, and the one a name means.

The configs live in `gin/` beside the package in a source checkout, and
inside it as package data once installed (setup.cfg maps `gin/` to
`zapkeras/gin/`). Their includes are written from the folder that holds
`gin/` (`include 'gin/parts/convnet.gin'`), which is on gin's search path
for every run, so a config of the user's own can include shipped parts
too.
"""

import contextlib
import logging
import os

import zapkeras


def root():
    """The folder holding the shipped `gin/`, or None if there is none."""
    package = os.path.dirname(os.path.abspath(zapkeras.__file__))
    for folder in (package, os.path.dirname(package)):
        if os.path.isdir(os.path.join(folder, "gin")):
            return folder
    return None


def find(path):
    """`path` if it is a file, else the shipped config it names
    ('omniglot/asb_zap.gin' or 'gin/omniglot/asb_zap.gin'), else None."""
    if os.path.isfile(path):
        return path
    shipped = root()
    if shipped is None or os.path.isabs(path):
        return None
    for candidate in (os.path.join("gin", path), path):
        full = os.path.join(shipped, candidate)
        if os.path.isfile(full):
            return full
    return None


def search_paths(gin_files):
    """gin's search path for `gin_files`: the shipped configs' folder and
    every folder holding a `gin/` that one of the files is in."""
    paths = {root()} - {None}
    for path in gin_files:
        folder = os.path.dirname(os.path.abspath(path))
        while folder != os.path.dirname(folder):
            if os.path.basename(folder) == "gin":
                paths.add(os.path.dirname(folder))
            folder = os.path.dirname(folder)
    return sorted(paths)


class _IncludeMisses(logging.Filter):
    """gin's package-path reader logs an error for each include it does
    not find relative to the working directory, before the search path
    finds it; a missing file is still gin's IOError."""

    def filter(self, record):
        return record.msg != "Path not found: %s"


@contextlib.contextmanager
def quiet_include_misses():
    """Parses in the block log no such misses."""
    root_logger, only = logging.getLogger(), _IncludeMisses()
    root_logger.addFilter(only)
    try:
        yield
    finally:
        root_logger.removeFilter(only)
