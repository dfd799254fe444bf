"""Keras internals live in zapkeras/compat.py only, for tested versions."""

import ast
import pathlib

import keras
import pytest

from zapkeras import compat

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "zapkeras"


def test_installed_keras_is_a_tested_version():
    reason = compat.unsupported_reason()
    assert reason is None, reason


def test_every_internal_compat_uses_exists():
    missing = compat.missing_internals()
    assert not missing, (
        f"keras {keras.__version__} lacks {missing}, which zapkeras/compat.py "
        "relies on; adapt compat.py before extending compat.TESTED."
    )


def test_unsupported_versions_are_named_with_the_fix():
    assert compat.unsupported_reason("3.15.1") is None
    reason = compat.unsupported_reason("3.99.0")
    assert "keras 3.99.0" in reason and "pip install" in reason
    with pytest.warns(UserWarning, match="3.99.0"):
        compat.warn_if_unsupported("3.99.0")


def _violations(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and "keras.src" in (
            node.module or ""
        ):
            yield node.lineno, f"from {node.module} import ..."
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras.src"):
                    yield node.lineno, f"import {alias.name}"
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (
                isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            )
        ):
            yield node.lineno, ast.unparse(node)


def test_no_module_but_compat_touches_keras_internals():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "compat.py"
        for line, what in _violations(path)
    ]
    assert not found, "\n".join(found)
