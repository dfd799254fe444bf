"""The repository stands alone: code, configs, help text and docs cite no
file outside it, and every `docs/<name>.md` (and its §) they cite exists.

Scanned: zapkeras/**/*.py, gin/**/*.gin, pipelines/**, tools/**, README.md,
setup.cfg, pyproject.toml, tests/**/*.py and docs/*.md."""

import glob
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_FILES = ("README.md", "setup.cfg", "pyproject.toml")

# Notes kept outside the repository, for its developers only (spelt with
# a class, `[s]`, so that this file passes its own scan).
FORBIDDEN = re.compile(
    r"reference-implementation[s]|ecosystem-note[s]|reference note[s]"
    r"|of the note[s]|\.\./share[d]|shared/(?:docs|papers|data)"
    r"|\bSPE[C]\b"
)
# Tests may read the real-data subset kept beside the checkout.
FORBIDDEN_IN_TESTS = re.compile(
    r"reference-implementation[s]|ecosystem-note[s]|shared/(?:docs|papers)"
    r"|\bSPE[C]\b"
)
# A repo-relative docs path, optionally followed by section references such
# as "§2.2", "§1.4-1.8" or "§1.7, §1.8" (possibly across a comment break).
DOCS_PATH = re.compile(
    r"(?<![\w/.-])docs/([\w.-]+\.md)"
    r"((?:[\s#]*§\s*\d+(?:\.\d+)?(?:\s*[-–]\s*\d+(?:\.\d+)?)?,?)*)"
)
SECTION = re.compile(r"\d+(?:\.\d+)?")
HEADING = re.compile(r"^#{2,3}\s+(\d+(?:\.\d+)?)\.?\s", re.MULTILINE)


def _scanned(path):
    if path in TOP_FILES:
        return True
    if path.startswith("zapkeras/"):
        return path.endswith(".py")
    if path.startswith("gin/"):
        return path.endswith(".gin")
    if path.startswith(("pipelines/", "tools/")):
        return "__pycache__" not in path
    if path.startswith("tests/"):
        return path.endswith(".py")
    return (
        path.startswith("docs/")
        and path.count("/") == 1
        and (path.endswith(".md"))
    )


def _candidates():
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        listed = [
            os.path.relpath(p, ROOT).replace(os.sep, "/")
            for p in glob.glob(os.path.join(ROOT, "**", "*"), recursive=True)
        ]
    return listed


def _files():
    """{repo path: text} of every scanned text file."""
    texts = {}
    for path in sorted(set(_candidates())):
        full = os.path.join(ROOT, path)
        if not (_scanned(path) and os.path.isfile(full)):
            continue
        try:
            with open(full, encoding="utf-8") as f:
                texts[path] = f.read()
        except UnicodeDecodeError:
            continue
    return texts


FILES = _files()


def _line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def test_scans_the_repository():
    assert "README.md" in FILES
    assert any(p.startswith("zapkeras/") for p in FILES)
    assert any(p.startswith("gin/") for p in FILES)


def test_no_citations_of_files_outside_the_repository():
    hits = []
    for path, text in FILES.items():
        lines = text.splitlines()
        forbidden = FORBIDDEN
        if path.startswith("tests/"):
            forbidden = FORBIDDEN_IN_TESTS
        for i, line in enumerate(lines):
            if forbidden.search(line):
                hits.append(f"{path}:{i + 1}: {line.strip()}")
                continue
            # A name hyphenated across a line break ("reference-" then
            # "implementations.md" in a docstring or comment).
            if line.rstrip().endswith("-") and i + 1 < len(lines):
                joined = line.rstrip() + lines[i + 1].lstrip(" \t#\"'")
                if forbidden.search(joined):
                    hits.append(f"{path}:{i + 1}: {line.strip()}")
    assert not hits, (
        "These cite notes outside the repository; state the fact or cite "
        "docs/reference_codes.md / docs/keras_notes.md instead:\n"
        + "\n".join(hits)
    )


def _sections(name):
    with open(os.path.join(ROOT, "docs", name), encoding="utf-8") as f:
        return set(HEADING.findall(f.read()))


def test_cited_docs_and_sections_exist():
    missing = []
    sections = {}
    for path, text in FILES.items():
        for match in DOCS_PATH.finditer(text):
            name, refs = match.group(1), match.group(2)
            where = f"{path}:{_line_of(text, match.start())}"
            if not os.path.isfile(os.path.join(ROOT, "docs", name)):
                missing.append(f"{where}: docs/{name} does not exist")
                continue
            if name not in sections:
                sections[name] = _sections(name)
            for number in SECTION.findall(refs):
                if number not in sections[name]:
                    missing.append(f"{where}: docs/{name} has no §{number}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", ["reference_codes.md", "keras_notes.md"])
def test_documentation_is_there(name):
    assert _sections(name), f"docs/{name} has no numbered sections"
