"""What the claims (pipelines/claims.py) measure: the reproduce grid's
cells, the metrics read from each run, and the datasets they need.

The cells are the study pipelines' own (frati2024.runs,
hernandez2025.cells, warm_start.runs), named `<study>/<cell>`, plus a few
variants of them that the claims need: SGD at transfer (frati2025 Fig. 4),
and for berariu2021 a shorter pretraining (Fig. 2), a wider and a deeper
network (Fig. 5) and a reset of the top layers (Fig. 6).
"""

import dataclasses
import glob
import os

import numpy as np

from pipelines import frati2024
from pipelines import hernandez2025
from pipelines import stats
from pipelines import warm_start
from pipelines import warm_start_report

# --- metrics: (what it is, fn(results, run_dir) -> float or None) -------


def _key(path):
    return lambda results, run_dir: stats.lookup(results, path)


def _zap_similarity(layers):
    """Mean over the zap-divergence steps (and the chosen layers) of the
    cosine similarity to the unzapped control, at the first rate."""

    def metric(results, run_dir):
        path = os.path.join(run_dir, "curves", "zap_divergence.npz")
        if not os.path.exists(path):
            return None
        arrays = np.load(path)
        names = list(arrays["layers"])
        rows = [i for i, name in enumerate(names) if layers(name)]
        key = next(k for k in arrays.files if k.startswith("lr_"))
        return float(np.mean(arrays[key][rows]))

    return metric


def _early_task_loss(results, run_dir):
    """Mean final loss of the first half of the tasks (classes, in
    training order) over the transfer runs at the best rate."""
    best = stats.lookup(results, "transfer.sequential.best_lr")
    if best is None:
        return None
    pattern = os.path.join(
        run_dir, "curves", "task_losses", f"lr_{best:g}_run_*.npy"
    )
    losses = [np.load(p)[-1] for p in sorted(glob.glob(pattern))]
    if not losses:
        return None
    return float(np.mean([row[: max(1, len(row) // 2)] for row in losses]))


def _per_task(summary):
    def metric(results, run_dir):
        per_task = stats.lookup(results, "continual.online_accuracy_per_task")
        return float(summary(per_task)) if per_task else None

    return metric


METRICS = {
    "sequential": (
        "sequential transfer test accuracy (best rate)",
        _key("transfer.sequential.test_accuracy"),
    ),
    "iid": (
        "i.i.d. transfer test accuracy (best rate)",
        _key("transfer.iid.test_accuracy"),
    ),
    "fc_realignment": (
        "zap-divergence: classifier's mean cosine similarity to the control",
        _zap_similarity(lambda name: name == "classifier"),
    ),
    "conv_similarity": (
        "zap-divergence: conv layers' mean cosine similarity to the control",
        _zap_similarity(lambda name: "conv" in name),
    ),
    "early_task_loss": (
        "final loss of the first half of the transfer tasks",
        _early_task_loss,
    ),
    "final_online": (
        "online accuracy on the last task",
        _key("continual.online_accuracy"),
    ),
    "peak_online": (
        "best online accuracy of a task in the first half",
        _per_task(lambda a: max(a[: max(1, (len(a) + 1) // 2)])),
    ),
    "late_online": (
        "mean online accuracy of the last quarter of the tasks",
        _per_task(lambda a: np.mean(a[-max(1, len(a) // 4) :])),
    ),
    "final_test": (
        "test accuracy after the last task",
        _key("continual.test_accuracy"),
    ),
    "prediction": (
        "test accuracy of the network the method predicts with (the "
        "tortoise for Hare & Tortoise)",
        lambda results, run_dir: warm_start_report.prediction_accuracy(results),
    ),
    "fresh": (
        "test accuracy of a fresh network trained on the final data",
        _key("continual.fresh_test_accuracy"),
    ),
}


# --- datasets -------------------------------------------------------------

_OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/tree/master/python"
# name: (title, [paths under DATA_DIR that together hold it], how to get it)
DATASETS = {
    "omniglot": (
        "Omniglot",
        [
            (
                "omniglot/images_background.zip",
                "omniglot/images_evaluation.zip",
            ),
            ("omniglot/images_background", "omniglot/images_evaluation"),
            ("omniglot/3.0.0",),
        ],
        "put images_background.zip and images_evaluation.zip from "
        f"{_OMNIGLOT_URL} in DATA_DIR/omniglot/ and pass --data_dir=DATA_DIR",
    ),
    "omni_image": (
        "Omni-image",
        [("omni_image/train", "omni_image/test")],
        "put Omni-image (Frati et al. 2023, 'OmnImage: Evolving 1k image "
        "cliques'; 700 pretraining and 300 transfer classes of 20 images) "
        "in DATA_DIR/omni_image/train/<class>/ and test/<class>/ and pass "
        "--data_dir=DATA_DIR",
    ),
}


def missing_data(dataset, data_dir):
    """None when `dataset` (a DATASETS key, or None for the embedded
    glyphs) is under `data_dir`; else which is missing and how to get it."""
    if dataset is None:
        return None
    title, layouts, how = DATASETS[dataset]
    for layout in layouts:
        if all(os.path.exists(os.path.join(data_dir, p)) for p in layout):
            return None
    return f"{title} not found under {data_dir}; {how}"


# --- cells ----------------------------------------------------------------

# frati2025 Fig. 4a: SGD with momentum 0.9 (App. A) at App. C's rates,
# the same for both optimizers there. (At 0.1 … 0.003 every rate blew the
# early tasks' losses up to ~100 and left the probe near chance.)
SGD = (
    "TransferRunner.transfers = {'sequential': @sequential_transfer}",
    "sequential_transfer.optimizer = @keras.optimizers.SGD",
    "keras.optimizers.SGD.momentum = 0.9",
    "TRANSFER_LRS = (0.001, 0.0006, 0.0003, 0.0001)",
    "sequential_transfer.task_loss_every = 15",
)
# The continual studies' ci scales are smoke budgets (5 permuted tasks of
# 2 epochs, warm starts of ~20 steps) at which the networks stay near
# chance; the scorecard's ci runs give them budgets at which they learn
# (online accuracy ~0.45 on permuted glyphs, test accuracy ~0.4 on the
# class-incremental ViT and ~0.7 on warm starts; measured on 2 CPU cores,
# tens of seconds a run).
CI_BUDGETS = {
    "permuted": (
        "glyph_class_sets.drawings = 60",
        "TASKS = 40",
        "EPOCHS_PER_TASK = 2",
    ),
    "class_incremental": (
        "glyph_class_sets.drawings = 60",
        "EPOCHS_PER_TASK = 10",
    ),
    "lee2024": ("EPOCHS_PER_TASK = 30",),
    "berariu2021": ("EPOCHS_PER_TASK = 20",),
}
# Omni-image at ci: 28-pixel images and 200 pretraining classes so that a
# run costs about an Omniglot one (not measured: no Omni-image here).
OMNI_IMAGE_CI = ("IMAGE_SIZE = 28", "PRETRAIN_CLASSES = 200")
# berariu2021 variants of the two-stage warm start, per scale.
FEW_EPOCHS = {"ci": 1, "small": 5, "paper": 5}  # Fig. 2: "5-10 for Adam"
WIDER = {"ci": 16, "small": 64, "paper": 256}  # Fig. 5, scale's ×4
DEEPER = {"ci": (2, 2, 2, 2), "small": (3, 3, 3, 3), "paper": (4, 4, 4, 4)}
LAST_STAGE_BLOCKS = {"ci": 1, "small": 2, "paper": 2}  # the scale's blocks
LEE_POINT = "ratio_0.1-noise_0.5"  # lee2024 §3.4, Fig. 4
BERARIU_POINT = "stages_2-uniform_1"


def _ci_budget(scale, name):
    """CI_BUDGETS of `name`'s study or problem (its first part) at ci."""
    return CI_BUDGETS[name.split("/")[0]] if scale == "ci" else ()


def _named(study, runs, name=None, params=()):
    """`runs` as cells `<study>/<name or run.name>`, `params` appended."""
    return [
        dataclasses.replace(
            r, name=f"{study}/{name or r.name}", params=r.params + params
        )
        for r in runs
    ]


def _reset_top(scale):
    """berariu2021 Fig. 6: the last ResNet stage and the classifier drawn
    afresh after pretraining (HeadReset at the first task's end)."""
    names = [
        f"stage3_block{b}_{part}"
        for b in range(LAST_STAGE_BLOCKS[scale])
        for part in ("conv1", "bn1", "conv2", "bn2")
    ]
    names += ["stage3_block0_shortcut", "stage3_block0_shortcut_bn"]
    return (
        "continual_learning.callbacks = [@HeadReset()]",
        f"HeadReset.layer = {names + ['classifier']!r}",
        "HeadReset.resample = True",
        "HeadReset.every = (1, 'tasks')",
        "continual_learning.fresh_baseline = False",
    )


def _few_epochs(scale):
    """berariu2021 Fig. 2: a short first stage (its fresh network is the
    two-stage cell's: same seed, same final data)."""
    return (
        f"multi_stage_tasks.first_epochs = {FEW_EPOCHS[scale]}",
        "continual_learning.fresh_baseline = False",
    )


def _frati_runs(scale, seeds):
    analyses = frati2024.ANALYSES
    out = _named(
        "frati2024",
        frati2024.runs(frati2024.CONDITIONS, seeds, scale, analyses),
    )
    omni = OMNI_IMAGE_CI if scale == "ci" else ()
    out += _named(
        "frati2024/omni_image",
        frati2024.runs(
            frati2024.CONDITIONS, seeds, scale, omni, dataset="omni_image"
        ),
    )
    sgd = frati2024.runs(("iid_zap",), seeds, scale, SGD)
    return out + _named("frati2025", sgd, "iid_zap_sgd")


def _hernandez_runs(scale, seeds):
    s = hernandez2025.SCALES[scale]
    sets = (
        ("permuted", ("base", "cbp", "redo", "swr"), "small", "none"),
        (
            "permuted",
            ("base", "shrink_perturb", "cbp", "redo", "swr"),
            "small",
            "post",
        ),
        ("class_incremental", ("base", "swr"), "large", "reparam"),
        ("class_incremental", ("base",), "large", "standard"),
    )
    cell_list = [
        c
        for problem, methods, width, norm in sets
        for c in hernandez2025.cells([problem], s, methods, [width], [norm])
    ]
    out = []
    for run in hernandez2025.runs(cell_list, seeds):
        budget = _ci_budget(scale, run.name)
        out += _named("hernandez2025", [run], params=budget)
    return out


def _warm_start_runs(scale, seeds):
    lee = warm_start.SCALES["lee2024"][scale]
    values = {**warm_start.GRID_DEFAULTS, "ratios": (0.1,), "noises": (0.5,)}
    methods = ("base", "head_reset", "shrink_perturb", "hare_tortoise", "redo")
    lee_runs = warm_start.runs(
        "lee2024", lee, values, methods, seeds, _ci_budget(scale, "lee2024")
    )
    out = _named("lee2024", lee_runs)
    berariu = warm_start.SCALES["berariu2021"][scale]
    values = {**warm_start.GRID_DEFAULTS, "stages": (2, 3)}
    staged = warm_start.runs(
        "berariu2021",
        berariu,
        values,
        ("base",),
        seeds,
        _ci_budget(scale, "berariu2021"),
    )
    out += _named("berariu2021", staged)
    two = [r for r in staged if r.name.startswith(BERARIU_POINT)]
    for name, params in (
        ("few_epochs", _few_epochs(scale)),
        ("wider", (f"WIDTH = {WIDER[scale]}",)),
        ("deeper", (f"resnet18.blocks = {DEEPER[scale]}",)),
        ("reset_top", _reset_top(scale)),
    ):
        out += _named("berariu2021", two, name, params)
    return out


def cells(scale, seeds, extra=()):
    """{cell: [Run per seed]} of every claim at `scale` (ci|small|paper),
    `extra` bindings last in every run."""
    out = {}
    for build in (_frati_runs, _hernandez_runs, _warm_start_runs):
        for run in build(scale, seeds):
            run = dataclasses.replace(run, params=run.params + tuple(extra))
            out.setdefault(run.name, []).append(run)
    return out
