"""docs/: the generated configuration reference is current and complete, and
docs/methods.md names every method and protocol and cites sections that
exist (issue 19). No training; the registry and the gin files are read."""

import glob
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re

import pytest

import gin
from zapkeras import gin_imports  # noqa: F401  (registers the configurables)
from zapkeras import methods as methods_package
from zapkeras import protocols as protocols_package
from zapkeras.methods import asb
from zapkeras.methods import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def _load_tool():
    path = os.path.join(ROOT, "tools", "config_reference.py")
    spec = importlib.util.spec_from_file_location("config_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def _modules(package):
    """Every module of `package`, imported."""
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    ]


@pytest.fixture(scope="module")
def tool():
    return _load_tool()


@pytest.fixture(scope="module")
def configuration():
    return _read("configuration.md")


@pytest.fixture(scope="module")
def methods_md():
    return _read("methods.md")


def test_configuration_reference_is_current(tool, configuration):
    assert (
        tool.generate() == configuration
    ), "docs/configuration.md is stale; run python tools/config_reference.py"


def test_every_configurable_is_documented(configuration):
    names = {
        c.name
        for _, c in gin.config._REGISTRY.items()
        if c.module.startswith("zapkeras")
    }
    assert {"Zapping", "iid_pretraining", "mlp", "TransferRunner"} <= names
    headings = set(re.findall(r"^#### `(\w+)`$", configuration, re.M))
    assert names - headings == set()


def test_every_parameter_and_kind_is_listed(tool, configuration):
    # A declared kind shows in its row, a denylisted name does not.
    assert "| `fraction` | `1.0` | number in (0, 1] |" in configuration
    assert "| `std_mode` | `'per_unit'` | one of `'per_unit'`" in configuration
    assert "| `threshold` | `None` | None or number ≥ 0 |" in configuration
    section = configuration.split("#### `continual_dataset`")[1]
    section = section.split("####")[0]
    assert "`data_dir`" not in section and "`image_size`" in section


def test_every_macro_of_the_gin_files_is_documented(configuration):
    used = set()
    for path in glob.glob(
        os.path.join(ROOT, "gin", "**", "*.gin"), recursive=True
    ):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        used.update(re.findall(r"%([A-Z][A-Z0-9_]*)", text))
        used.update(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", text, re.M))
    assert {"WIDTH", "TRANSFER_LRS", "LAYER_NORM"} <= used
    macros = configuration.split("## Macros")[1]
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", macros, re.M))
    assert used - rows == set()
    assert "`frati_convnet.width`" in macros  # what WIDTH binds


def test_check_flag_reports_a_stale_page(tool, monkeypatch, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    monkeypatch.setattr(tool, "ROOT", str(tmp_path))
    monkeypatch.setattr(tool, "generate", lambda: "fresh\n")
    assert tool.main(["--check"]) == 1  # no file yet
    (docs / "configuration.md").write_text("old\n", encoding="utf-8")
    assert tool.main(["--check"]) == 1
    assert tool.main([]) == 0
    assert tool.main(["--check"]) == 0


def _method_classes():
    """Public subclasses of `Method` defined in zapkeras/methods, and the
    ASB wrappers."""
    found = {asb.ASB, asb.MetaASB}
    for module in _modules(methods_package):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and issubclass(cls, base.Method)
                and cls is not base.Method
                and not name.startswith("_")
            ):
                found.add(cls)
    return {cls.__name__ for cls in found}


def _protocols():
    """Gin names of the protocol classes in zapkeras/protocols."""
    _modules(protocols_package)
    return {
        c.name
        for _, c in gin.config._REGISTRY.items()
        if inspect.isclass(c.wrapped)
        and c.wrapped.__module__.startswith("zapkeras.protocols.")
    }


def _mentions(text, name):
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None


def test_methods_page_names_every_method(methods_md):
    names = _method_classes()
    assert {"Zapping", "SelectiveWeightReinit", "ASB", "MetaASB"} <= names
    assert {n for n in names if not _mentions(methods_md, n)} == set()


def test_methods_page_names_every_protocol(methods_md):
    names = _protocols()
    assert {"iid_pretraining", "continual_learning", "zap_divergence"} <= names
    assert {n for n in names if not _mentions(methods_md, n)} == set()


# A section list: "§1.2", "§1.2`, §1.12", "§1.4-1.8", "§4.3a", "§2.1.1".
_SECTIONS = (
    r"((?:`?[,;]?\s*(?:and\s+)?§\s*\d+(?:\.\d+)*[a-z]?"
    r"(?:\s*[-–]\s*\d+(?:\.\d+)*[a-z]?)?)+)"
)
# After a docs page's name, or after a paper's key (a paper's own section).
_CITATION = re.compile(r"\b([\w-]+\.md)" + _SECTIONS)
_PAPER = re.compile(
    r"\b(?:frati2024|frati2025|hernandez-garcia2025|lee2024|berariu2021)"
    + _SECTIONS
)
_NUMBER = re.compile(r"\d+(?:\.\d+)*[a-z]?")
_HEADING = re.compile(r"^#{2,3}\s+(\d+(?:\.\d+)*[a-z]?)\.?\s", re.M)


def _citations(text):
    """[(page, section)] cited in `text`, and the §s that name neither a
    page nor a paper (ambiguous)."""
    cited, covered = [], set()
    for pattern in (_CITATION, _PAPER):
        for match in pattern.finditer(text):
            covered.update(range(*match.span()))
            if pattern is _CITATION:
                numbers = _NUMBER.findall(match.group(2))
                cited += [(match.group(1), number) for number in numbers]
    bare = [
        text[i : i + 8]
        for i in (m.start() for m in re.finditer("§", text))
        if i not in covered
    ]
    return cited, bare


def test_citation_parser():
    text = (
        "as `reference_codes.md §1.2`, §1.12 and keras_notes.md §6; lee2024 §3"
    )
    assert _citations(text) == (
        [
            ("reference_codes.md", "1.2"),
            ("reference_codes.md", "1.12"),
            ("keras_notes.md", "6"),
        ],
        [],
    )
    cited, bare = _citations("reference_codes.md §4.3a-4.4, then (§2.2)")
    assert cited == [
        ("reference_codes.md", "4.3a"),
        ("reference_codes.md", "4.4"),
    ]
    assert bare == ["§2.2)"]


def test_methods_page_cites_existing_sections(methods_md):
    cited, bare = _citations(methods_md)
    assert bare == [], "write these as reference_codes.md §x or <paper> §x"
    assert len([c for c in cited if c[0] == "reference_codes.md"]) >= 20
    missing = []
    for page, number in cited:
        path = os.path.join(DOCS, page)
        if not os.path.isfile(path):
            missing.append(f"{page} does not exist")
        elif number not in _HEADING.findall(_read(page)):
            missing.append(f"{page} has no §{number}")
    assert missing == []
