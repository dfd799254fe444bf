"""The package as users install it: `pip install .` (not editable) gives
the console scripts, the pipelines and the shipped gin configs, usable
from any directory."""

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
import setuptools

from tests.test_standalone import ROOT
from tests.test_standalone import _candidates

# The quickstart shrunk to seconds.
TINY = [
    "--gin_param=glyph_class_sets.background_classes = 12",
    "--gin_param=glyph_class_sets.evaluation_classes = 6",
    "--gin_param=PRETRAIN_CLASSES = None",
    "--gin_param=PRETRAIN_EPOCHS = 1",
    "--gin_param=WIDTH = 4",
    "--gin_param=TRANSFER_CLASSES = 6",
    "--gin_param=TRANSFER_RUNS = 1",
    "--gin_param=TRANSFER_LRS = (0.01,)",
]


def _options():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    return parser


def test_setup_cfg_lists_every_package_and_maps_the_configs():
    options = _options()
    listed = set(options["options"]["packages"].split())
    found = set(
        setuptools.find_packages(ROOT, include=["zapkeras*", "pipelines*"])
    )
    assert listed == found | {"zapkeras.gin"}
    assert options["options"]["package_dir"].split() == [
        "zapkeras.gin",
        "=",
        "gin",
    ]
    assert options["options.package_data"]["zapkeras.gin"] == "**/*.gin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with zapkeras installed from a copy of
    the repository's files; the test interpreter's packages (TensorFlow
    and the rest) are visible to it, zapkeras' source checkout is not."""
    base = tmp_path_factory.mktemp("installed")
    source, venv = base / "source", base / "venv"
    for path in _candidates():
        full = os.path.join(ROOT, path)
        if path.startswith("tests/") or not os.path.isfile(full):
            continue
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(full, source / path)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    with open(os.path.join(site, "test_interpreter.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", str(python), "install",
            "-q", "--no-deps", "--no-build-isolation", str(source),
        ],
        check=True,
    )  # fmt: skip
    shutil.rmtree(source)  # nothing may come from the copy
    work = base / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"

    def run(*args, timeout=600):
        return subprocess.run(
            args,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return venv / "bin", work, run


def test_installed_package_is_imported_from_the_environment(installed):
    bin_dir, _, run = installed
    proc = run(
        str(bin_dir / "python"),
        "-c",
        "import zapkeras, pipelines as p; print(zapkeras.__file__, p.__file__)",
    )
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert line.startswith(str(bin_dir.parent)), line


def test_zapkeras_train_runs_a_shipped_config_by_name(installed):
    bin_dir, work, run = installed
    proc = run(
        str(bin_dir / "zapkeras-train"),
        "--gin_file=quickstart.gin",
        *TINY,
        "--output_dir=out",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Path not found" not in proc.stderr
    assert (work / "out" / "results.json").is_file()
    assert "conditions" in (work / "out" / "results.json").read_text()


def test_a_pipeline_status_runs_from_any_directory(installed):
    bin_dir, _, run = installed
    proc = run(
        str(bin_dir / "python"),
        "-m",
        "pipelines.frati2024",
        "--status",
        "--output_dir=grid",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "meta_asb_zap" in proc.stdout


def test_zapkeras_tune_help_lists_its_flags_and_the_train_flags(installed):
    bin_dir, _, run = installed
    proc = run(str(bin_dir / "zapkeras-tune"), "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--tune_param", "--objective", "--gin_file", "--seed"):
        assert flag in proc.stdout
    assert len(proc.stdout.splitlines()) < 40


def test_an_unknown_config_name_is_a_usage_error(installed):
    bin_dir, _, run = installed
    proc = run(str(bin_dir / "zapkeras-train"), "--gin_file=omniglot/nope.gin")
    assert proc.returncode == 2
    assert "--gin_file='omniglot/nope.gin'" in proc.stderr
    assert "Traceback" not in proc.stderr


UNCHANGED = (
    "import os; e = dict(os.environ); import zapkeras; "
    "assert dict(os.environ) == e, set(os.environ.items()) ^ set(e.items())"
)


def test_importing_zapkeras_changes_no_environment_variable(installed):
    bin_dir, _, run = installed
    proc = run(str(bin_dir / "python"), "-c", UNCHANGED)
    assert proc.returncode == 0, proc.stderr


def test_another_keras_backend_is_an_import_error():
    proc = subprocess.run(
        [sys.executable, "-c", "import zapkeras"],
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "jax"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "ImportError: zapkeras runs on Keras' TensorFlow backend" in (
        proc.stderr
    )
