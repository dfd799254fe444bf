"""Dataset loaders by name: what `load_class_sets.name` and
`continual_dataset.name` select.

The modules that read datasets register their loaders here when imported
(zapkeras/data/__init__.py imports them all), and the functions that pick a
dataset by name look it up here, so none of those modules imports another.

A loader is `fn(name, data_dir, image_size)`. It returns ClassSets when the
dataset comes with its own pretraining and transfer classes (the embedded
glyphs, Omniglot), else one LabeledImages pool of all its classes for the
caller to split. `register(name)` registers the loader of one name,
`register_fallback` the loader of every other name: a dataset found by that
name under the data directory.
"""

from zapkeras.errors import UsageError

_LOADERS = {}
_FALLBACK = {}


def register(name):
    """Decorator: `fn` is the loader of dataset `name`."""

    def decorate(fn):
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _LOADERS[name] = fn
        return fn

    return decorate


def register_fallback(fn):
    """Decorator: `fn` loads every name not registered (one fallback)."""
    if _FALLBACK:
        raise ValueError("a fallback dataset loader is registered twice")
    _FALLBACK["loader"] = fn
    return fn


def names():
    """The registered dataset names, sorted."""
    return tuple(sorted(_LOADERS))


def loader(name, setting):
    """The loader of dataset `name`, the fallback for an unregistered name.

    `setting` (e.g. 'load_class_sets.name') is named in the UsageError
    raised when `name` is not a non-empty string or nothing can load it.
    """
    if isinstance(name, str) and name:
        if name in _LOADERS:
            return _LOADERS[name]
        if _FALLBACK:
            return _FALLBACK["loader"]
    known = ", ".join(repr(n) for n in names()) or "none"
    other = (
        ", or the name of a class-per-folder directory or a prepared tfds "
        "dataset under --data_dir"
        if _FALLBACK
        else ""
    )
    raise UsageError(
        f"{setting} = {name!r} names no dataset; use a registered dataset "
        f"({known}){other}."
    )
