"""Every bad input of the README's table, as a user would make it: exit
status 2, a message naming the setting, no traceback, no results.json
(issue: scale out and never lose work, item 4)."""

import os
import zipfile

import pytest

from tests.cli_utils import run_module
from tests.omniglot_layout import build_omniglot
from tests.omniglot_layout import needs_omniglot

QUICK = "--gin_file=gin/quickstart.gin"
ASB = "--gin_file=gin/omniglot/asb_zap.gin"
EMBEDDED_ASB = [
    ASB,
    "--gin_param=load_class_sets.name = 'embedded'",
    "--gin_param=glyph_class_sets.background_classes = 20",
    "--gin_param=glyph_class_sets.evaluation_classes = 10",
    "--gin_param=PRETRAIN_CLASSES = None",
]
TINY = [
    "--gin_param=WIDTH = 4",
    "--gin_param=PRETRAIN_CLASSES = 12",
    "--gin_param=glyph_class_sets.evaluation_classes = 10",
    "--gin_param=PRETRAIN_EPOCHS = 1",
    "--gin_param=TRANSFER_CLASSES = 4",
    "--gin_param=TRANSFER_RUNS = 1",
]


def _param(binding):
    return f"--gin_param={binding}"


# (id, arguments, environment, text the message must contain)
CASES = [
    ("unknown-flag", [QUICK, "--no_such_flag=1"], {}, "no_such_flag"),
    ("no-gin-file", [], {}, "--gin_file"),
    ("missing-gin-file", ["--gin_file=gin/nope.gin"], {}, "nope.gin"),
    ("stray-argument", [QUICK, "extra"], {}, "unexpected arguments"),
    (
        "misspelled-parameter",
        [QUICK, _param("iid_pretraining.epochz = 3")],
        {},
        "epochz",
    ),
    (
        "unknown-configurable",
        [QUICK, _param("NoSuchThing.x = 1")],
        {},
        "NoSuchThing",
    ),
    ("gin-syntax", [QUICK, _param("WIDTH = (")], {}, "WIDTH"),
    ("strategy", [QUICK, "--strategy=cluster"], {}, "--strategy"),
    (
        "multi-worker-no-cluster",
        [QUICK, "--strategy=multi_worker"],
        {},
        "TF_CONFIG",
    ),
    ("negative-seed", [QUICK, "--seed=-1"], {}, "seed"),
    (
        "cpu-devices",
        [QUICK, "--strategy=mirrored"],
        {"ZAPKERAS_CPU_DEVICES": "two"},
        "ZAPKERAS_CPU_DEVICES",
    ),
    (
        "unknown-dataset",
        [QUICK, _param("load_class_sets.name = 'nope'")],
        {},
        "nope",
    ),
    ("image-size", [QUICK, _param("IMAGE_SIZE = 0")], {}, "IMAGE_SIZE"),
    (
        "convnet-image-size",
        [QUICK, _param("IMAGE_SIZE = 30")],
        {},
        "IMAGE_SIZE",
    ),
    ("width", [QUICK, _param("WIDTH = 0")], {}, "WIDTH"),
    (
        "too-many-pretrain-classes",
        [QUICK, _param("load_class_sets.pretrain_classes = 100000")],
        {},
        "PRETRAIN_CLASSES",
    ),
    (
        "too-many-transfer-classes",
        [QUICK, _param("TRANSFER_CLASSES = 100000")],
        {},
        "TRANSFER_CLASSES",
    ),
    (
        "no-transfer-rates",
        [QUICK, _param("TRANSFER_LRS = ()")],
        {},
        "TRANSFER_LRS",
    ),
    (
        "negative-transfer-rate",
        [QUICK, _param("TRANSFER_LRS = (-0.1,)")],
        {},
        "TRANSFER_LRS",
    ),
    (
        "transfer-runs",
        [QUICK, _param("TRANSFER_RUNS = 0")],
        {},
        "TRANSFER_RUNS",
    ),
    (
        "eval-every",
        [QUICK, _param("sequential_transfer.eval_every = 0")],
        {},
        "eval_every",
    ),
    (
        "pretrain-epochs",
        [QUICK, _param("PRETRAIN_EPOCHS = -1")],
        {},
        "iid_pretraining.epochs",
    ),
    (
        "batch-size",
        [QUICK, _param("iid_pretraining.batch_size = 0")],
        {},
        "batch_size",
    ),
    (
        "learning-rate",
        [QUICK, _param("iid_pretraining.learning_rate = -0.1")],
        {},
        "learning_rate",
    ),
    (
        "head-outputs",
        [QUICK, _param("TransferRunner.head_outputs = 2")],
        {},
        "head_outputs",
    ),
    (
        "zap-fraction",
        [QUICK, _param("Zapping.fraction = 1.5")],
        {},
        "Zapping.fraction",
    ),
    (
        "zap-cadence",
        [QUICK, _param("Zapping.every = (0, 'epochs')")],
        {},
        "Zapping.every",
    ),
    (
        "zap-std-mode",
        [QUICK, _param("Zapping.std_mode = 'bogus'")],
        {},
        "std_mode",
    ),
    (
        "asb-episodes",
        [*EMBEDDED_ASB, _param("PRETRAIN_EPISODES = 0")],
        {},
        "PRETRAIN_EPISODES",
    ),
    (
        "asb-k",
        [*EMBEDDED_ASB, _param("asb_pretraining.inner_steps = 0")],
        {},
        "inner_steps",
    ),
    (
        "asb-remember",
        [*EMBEDDED_ASB, _param("asb_pretraining.remember = 1000000")],
        {},
        "remember",
    ),
    (
        "asb-inner-rate",
        [*EMBEDDED_ASB, _param("asb_pretraining.inner_learning_rate = -1.0")],
        {},
        "inner_learning_rate",
    ),
    (
        "method-setting",
        [
            "--gin_file=gin/permuted/swr.gin",
            _param("DATASET = 'embedded'"),
            _param("continual_dataset.classes = 4"),
            _param("TASKS = 1"),
            _param("SelectiveWeightReinit.factor = -1.0"),
        ],
        {},
        "SelectiveWeightReinit.factor",
    ),
    (
        "other-runner",
        [
            "--gin_file=gin/permuted/base.gin",
            _param("TransferRunner.conditions = ('a', 'b')"),
        ],
        {},
        "TransferRunner.conditions",
    ),
    (
        "diverging-loss",
        [QUICK, _param("iid_pretraining.learning_rate = 1e30")],
        {},
        "non-finite",
    ),
]


def _check(proc, expected, out):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(out, "results.json"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, env, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_exits_2_with_a_message(args, env, expected, tmp_path):
    out = str(tmp_path / "run")
    if args and args[0] == QUICK:  # the bad binding comes after the tiny ones
        args = [QUICK, *TINY, *args[1:]]
    proc = run_module("zapkeras.train", *args, f"--output_dir={out}", env=env)
    _check(proc, expected, out)


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = str(blocker / "run")
    proc = run_module("zapkeras.train", QUICK, *TINY, f"--output_dir={out}")
    _check(proc, "--output_dir", out)


@needs_omniglot
@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_omniglot_archive(damage, tmp_path):
    data = tmp_path / "data"
    build_omniglot(str(data))
    archive = data / "omniglot" / "images_evaluation.zip"
    if damage == "missing":
        archive.unlink()
    else:
        blob = archive.read_bytes()
        archive.write_bytes(blob[: len(blob) // 2])
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(archive)
    out = str(tmp_path / "run")
    proc = run_module(
        "zapkeras.train",
        "--gin_file=gin/omniglot/iid.gin",
        f"--data_dir={data}",
        f"--output_dir={out}",
    )
    _check(proc, "images_evaluation", out)
