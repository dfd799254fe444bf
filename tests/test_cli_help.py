"""The command line as a person meets it: a short --help for each command,
Ctrl-C / SIGTERM ending a run with one line (exit 130 / 143) that the same
command resumes exactly, and no TensorFlow start-up log on the terminal."""

import os
import signal

import pytest

from pipelines import progress
from tests.cli_utils import quickstart_tiny
from tests.cli_utils import results_without_wall_time
from tests.cli_utils import run_module
from tests.cli_utils import signal_module_at
from zapkeras import quiet

# The environment a user has: no TF_CPP_MIN_LOG_LEVEL (empty is unset).
USER_ENV = {"TF_CPP_MIN_LOG_LEVEL": ""}
START_UP_LOG = (
    "oneDNN",
    "cuda",
    "cuInit",
    "cpu_feature_guard",
    "absl::InitializeLog",
)
TRAIN_FLAGS = (
    "gin_file",
    "gin_param",
    "output_dir",
    "data_dir",
    "seed",
    "strategy",
)
PIPELINE_FLAGS = (
    "data_dir",
    "output_dir",
    "scale",
    "seeds",
    "gin_param",
    "jobs",
    "status",
    "report_only",
)
PIPELINES = {
    "frati2024": ("conditions", "analyses"),
    "hernandez2025": ("problems", "methods", "widths", "layer_norms"),
    "warm_start": (
        "study",
        "methods",
        "ratios",
        "noises",
        "stages",
        "uniform_ratios",
        "smooth_shifts",
    ),
    "reproduce": ("claims",),
}


def _assert_quiet(stderr):
    for text in START_UP_LOG:
        assert text not in stderr, stderr[-3000:]


def _assert_short_help(proc, names):
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) < 40, proc.stdout
    for name in names:
        listed = [
            line
            for line in lines
            if line.split()[:1] in ([f"--{name}"], [f"--[no]{name}"])
            or line.lstrip().startswith(f"--{name}=")
        ]
        assert len(listed) == 1, (name, proc.stdout)
        assert len(listed[0].split()) > 1, listed  # with its help
    _assert_quiet(proc.stderr)


def test_train_help_lists_its_flags_one_line_each():
    proc = run_module("zapkeras.train", "--help", env=USER_ENV)
    _assert_short_help(proc, TRAIN_FLAGS)
    assert "  --seed=0  " in proc.stdout
    assert "  --strategy=auto  " in proc.stdout
    assert "--verbosity" not in proc.stdout.replace("--verbosity=0:", "")
    assert "--tfds_debug_list_dir" not in proc.stdout  # those: --helpfull


def test_train_helpfull_keeps_absls_listing():
    proc = run_module("zapkeras.train", "--helpfull")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "zapkeras.cli:" in proc.stdout
    assert "absl.logging:" in proc.stdout
    assert "--[no]tfds_debug_list_dir" in proc.stdout
    assert len(proc.stdout.splitlines()) > 60


@pytest.mark.parametrize("study", PIPELINES)
def test_pipeline_help_lists_its_flags_one_line_each(study):
    proc = run_module(f"pipelines.{study}", "--helpshort")
    _assert_short_help(proc, PIPELINE_FLAGS + PIPELINES[study])


def test_start_up_log_is_held_back_below_the_level_asked_for():
    caught = (
        "something C++ printed without a record\n"
        "WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR\n"
        "I0000 00:00:1796231522.922932   12352 port.cc:153] oneDNN custom "
        "operations are on.\n"
        "I0000 00:00:1796231522.967 12 cpu_feature_guard.cc:227] optimized\n"
        "To enable the following instructions: AVX2 FMA, rebuild.\n"
        "2025-09-17 14:44:05.157831: W external/x.cc:32] a warning\n"
        "E0000 00:00:1796231614.749542   12724 cuda_platform.cc:52] failed "
        "call to cuInit\n"
    )
    assert quiet.keep(caught, 3) == "something C++ printed without a record\n"
    kept = quiet.keep(caught, 1).splitlines()
    assert [line[:4] for line in kept] == ["some", "2025", "E000"]
    assert quiet.keep(caught, 0) == caught
    assert quiet.level({}, []) == 3
    assert quiet.level({"TF_CPP_MIN_LOG_LEVEL": "2"}, []) == 3
    assert quiet.level({"TF_CPP_MIN_LOG_LEVEL": "0"}, ["--verbosity=-2"]) == 0
    assert quiet.level({}, ["--verbosity=0"]) == 0
    assert quiet.level({}, ["-v", "-1"]) == 1
    assert quiet.level({}, ["--", "--verbosity=0"]) == 3


TINY = quickstart_tiny(
    epochs=3,
    runs=2,
    rates="(0.01, 0.001)",
    extra=["iid_pretraining.batch_size = 8"],
)


def _assert_one_stop_line(proc, signum, out):
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"zapkeras: stopped by {name}; "), lines
    assert out in lines[0] and "checkpoint" in lines[0], lines
    assert lines[0].endswith("run the same command again to resume."), lines
    assert not os.path.exists(os.path.join(out, "results.json"))


@pytest.mark.slow
def test_sigint_and_sigterm_stop_with_one_line_and_resume_exactly(tmp_path):
    whole = str(tmp_path / "whole")
    proc = run_module(
        "zapkeras.train", *TINY, f"--output_dir={whole}", env=USER_ENV
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""  # no TensorFlow start-up log by default
    cut = str(tmp_path / "cut")
    args = [*TINY, f"--output_dir={cut}"]
    proc = signal_module_at(
        "zapkeras.train",
        *args,
        trigger="pretrain[iid] epoch 2/3",
        signum=signal.SIGINT,
        env=USER_ENV,
    )
    _assert_one_stop_line(proc, signal.SIGINT, cut)
    assert 'after "pretrain[iid] epoch 2/3"' in proc.stderr
    proc = signal_module_at(
        "zapkeras.train",
        *args,
        trigger="transfer/sequential[iid] lr 0.01 run 1/2",
        signum=signal.SIGTERM,
        env=USER_ENV,
    )
    _assert_one_stop_line(proc, signal.SIGTERM, cut)
    assert "resuming" in proc.stdout
    assert "checkpoints/iid/transfer/sequential.json" in proc.stderr
    proc = run_module("zapkeras.train", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results_without_wall_time(cut) == results_without_wall_time(whole)


@pytest.mark.slow
def test_stopped_pipeline_stops_its_runs_and_resumes(tmp_path):
    root = str(tmp_path / "grid")
    args = [
        f"--output_dir={root}",
        "--seeds=2",
        "--conditions=iid",
        "--gin_param=load_class_sets.name = 'embedded'",
        "--gin_param=glyph_class_sets.background_classes = 10",
        "--gin_param=glyph_class_sets.evaluation_classes = 4",
        "--gin_param=TransferRunner.head_outputs = None",
        "--gin_param=WIDTH = 4",
        "--gin_param=PRETRAIN_EPOCHS = 2",
        "--gin_param=TRANSFER_CLASSES = 3",
        "--gin_param=TRANSFER_RUNS = 1",
        "--gin_param=TRANSFER_LRS = (0.001,)",
    ]
    proc = signal_module_at(
        "pipelines.frati2024",
        *args,
        trigger="iid seed 1",  # seed 0 has finished, seed 1 starts
        signum=signal.SIGTERM,
    )
    assert proc.returncode == 143, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("frati2024: stopped by SIGTERM; "), lines
    assert lines[0].endswith("run the same command again to resume."), lines
    seed_1 = os.path.join(root, "iid", "seed_1")
    entries = [
        (n, s, os.path.join(root, n, f"seed_{s}"))
        for n, s in (("iid", 0), ("iid", 1))
    ]
    states = [st for *_, st, _ in progress.status(root, entries)]
    assert states == ["done", "pending"]  # stopped: not failed
    assert os.path.exists(os.path.join(root, "iid", "seed_0", "results.json"))
    proc = run_module("pipelines.frati2024", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.exists(os.path.join(seed_1, "results.json"))
