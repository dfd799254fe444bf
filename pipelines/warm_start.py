"""Warm-start studies: lee2024 (methods × subset ratio × label noise) and
berariu2021 (stages × class imbalance, smooth shifts), the generalisation
gap of a warm-started network against a fresh one.

    python -m pipelines.warm_start --study=lee2024 --data_dir=DATA_DIR
    python -m pipelines.warm_start --study=berariu2021 --data_dir=DATA_DIR

Runs go to OUTPUT_DIR/<grid point>/<method>/seed_<n>/ (OUTPUT_DIR defaults
to runs/<study>; pipelines/cli.py has the shared flags).

- lee2024 (§3-4): gin/warm_start/<method>.gin (base, head_reset,
  shrink_perturb, hare_tortoise; l2, redo and
  spectral_decoupling run with --methods) at each
  `warm_start_tasks.first_ratio` (--ratios: the share of the data the
  network is warm-started on) × `.max_noise` (--noises: the label noise
  of that first phase). Base is always run: its fresh network, trained
  from the same initial weights on the final data, is every method's
  reference, so the other methods skip training their own (it would be
  the same network: same seed, same weights, same data) with
  continual_learning.fresh_baseline = False.
- berariu2021 (§2): base only. gin/warm_start/multi_stage.gin at
  TASKS (--stages) × multi_stage_tasks.uniform_ratio (--uniform_ratios,
  1 = uniform stages, less = class-imbalanced; Fig. 4), and
  gin/warm_start/smooth_shift.gin at each γ of --smooth_shifts (Fig. 3).

The report has per grid point and method the test accuracy of the network
the method predicts with (the tortoise for hare_tortoise, lee2024 §4; the
trained network otherwise), the fresh network's test accuracy (same seed),
the generalisation gap fresh − warm, mean ± std over seeds, and two-sided
Mann-Whitney U p-values against base and against fresh; bar charts of
accuracy and gap per grid point, test and online accuracy per phase,
online-accuracy learning curves, and for berariu2021 the gap against the
number of stages.

Scales: ci (embedded glyphs, a ResNet-18 of width 4 with one block a
stage on 16×16 images, a few epochs: minutes), small (CIFAR-10 from
--data_dir at width 16 and a tenth of the epochs: GPU-hours), paper (the
configs as shipped; lee2024 used 5 seeds).
"""

import dataclasses
import itertools

from absl import flags

from pipelines import cli
from pipelines import grid
from pipelines import warm_start_report

STUDIES = ("lee2024", "berariu2021")
METHODS = {
    "lee2024": ("base", "head_reset", "shrink_perturb", "hare_tortoise"),
    "berariu2021": ("base",),
}
OTHER_METHODS = ("l2", "redo", "spectral_decoupling")  # run on request
_TINY = (
    "DATASET = 'embedded'",
    "glyph_class_sets.background_classes = 10",
    "glyph_class_sets.evaluation_classes = 1",
    "continual_dataset.classes = 10",
    "continual_dataset.image_size = 16",
    "WIDTH = 4",
    "resnet18.blocks = (1, 1, 1, 1)",
    "continual_learning.batch_size = 16",
    "continual_learning.eval_batch_size = 50",
    "continual_learning.probe_size = 20",
)
_CIFAR_SMALL = ("WIDTH = 16", "continual_learning.checkpoint_every_epochs = 5")


@dataclasses.dataclass(frozen=True)
class Scale:
    seeds: int
    params: tuple  # bindings of every run
    grid: dict  # grid flag: its default values at this scale


SCALES = {
    "lee2024": {
        "ci": Scale(2, _TINY + ("EPOCHS_PER_TASK = 1",), {}),
        "small": Scale(
            3,
            _CIFAR_SMALL + ("EPOCHS_PER_TASK = 10",),
            {"ratios": (0.1, 0.3), "noises": (0.0, 0.5)},
        ),
        "paper": Scale(5, (), {}),
    },
    "berariu2021": {
        "ci": Scale(2, _TINY + ("EPOCHS_PER_TASK = 2",), {"stages": (2, 3)}),
        "small": Scale(
            3,
            _CIFAR_SMALL + ("EPOCHS_PER_TASK = 50",),
            {
                "stages": (2, 3, 5),
                "uniform_ratios": (1.0, 0.5),
                "smooth_shifts": (0.9,),
            },
        ),
        "paper": Scale(
            5,
            (),
            {
                "stages": (2, 3, 5, 10),
                "uniform_ratios": (1.0, 0.5, 0.0),
                "smooth_shifts": (0.5, 0.9, 0.99),
            },
        ),
    },
}
GRID_DEFAULTS = {
    "ratios": (0.1,),
    "noises": (0.5,),
    "stages": (2,),
    "uniform_ratios": (1.0,),
    "smooth_shifts": (),
}

FLAGS = flags.FLAGS


def define_flags():
    """This command's flags (at run time, so that importing the module for
    its grid, as pipelines.reproduce does, defines none)."""
    flags.DEFINE_enum("study", "lee2024", list(STUDIES), "Which paper's grid.")
    flags.DEFINE_list(
        "methods", None, "lee2024 methods (default: the first four)."
    )
    for name, text in (
        ("ratios", "lee2024: first-phase data ratios (first_ratio)."),
        ("noises", "lee2024: first-phase label noise (max_noise)."),
        ("stages", "berariu2021: numbers of stages (TASKS)."),
        ("uniform_ratios", "berariu2021: shares of uniform data per stage."),
        ("smooth_shifts", "berariu2021: smooth-shift γ values."),
    ):
        flags.DEFINE_list(name, None, text + " Default: the scale's.")
    flags.adopt_module_key_flags(cli)  # --help lists them


def points(study, values):
    """[(grid point, gin file or None for the method's, bindings)]."""
    if study == "lee2024":
        return [
            (
                f"ratio_{r:g}-noise_{n:g}",
                None,
                (
                    f"warm_start_tasks.first_ratio = {r}",
                    f"warm_start_tasks.max_noise = {n}",
                ),
            )
            for r, n in itertools.product(values["ratios"], values["noises"])
        ]
    stages = [
        (
            f"stages_{k:g}-uniform_{u:g}",
            "gin/warm_start/multi_stage.gin",
            (f"TASKS = {int(k)}", f"multi_stage_tasks.uniform_ratio = {u}"),
        )
        for k, u in itertools.product(
            values["stages"], values["uniform_ratios"]
        )
    ]
    smooth = [
        (
            f"smooth_{g:g}",
            "gin/warm_start/smooth_shift.gin",
            (f"multi_stage_tasks.smooth_shift = {g}",),
        )
        for g in values["smooth_shifts"]
    ]
    return stages + smooth


def runs(study, scale, values, methods, seeds, extra=()):
    out = []
    for point, gin_file, params in points(study, values):
        for method in methods:
            own = (
                ()
                if method == "base"
                else ("continual_learning.fresh_baseline = False",)
            )
            out += [
                grid.Run(
                    name=f"{point}/{method}",
                    gin_files=(gin_file or f"gin/warm_start/{method}.gin",),
                    seed=seed,
                    params=scale.params + params + own + tuple(extra),
                )
                for seed in range(seeds)
            ]
    return out


def _floats(name, study):
    given = getattr(FLAGS, name)
    if given is None:
        return SCALES[study][FLAGS.scale].grid.get(name, GRID_DEFAULTS[name])
    try:
        return tuple(float(v) for v in given)
    except ValueError:
        cli.usage_error(
            "warm_start", f"--{name}={','.join(given)}; give numbers."
        )


def main(argv):
    del argv
    study = FLAGS.study
    scale = SCALES[study][FLAGS.scale]
    methods = METHODS[study]
    if FLAGS.methods:
        allowed = methods + (OTHER_METHODS if study == "lee2024" else ())
        methods = cli.choices("warm_start", "methods", FLAGS.methods, allowed)
    methods = ("base", *(m for m in methods if m != "base"))
    values = {name: _floats(name, study) for name in GRID_DEFAULTS}
    all_runs = runs(
        study,
        scale,
        values,
        methods,
        FLAGS.seeds or scale.seeds,
        FLAGS.gin_param,
    )
    cli.run_study(
        study,
        all_runs,
        lambda runs, root: warm_start_report.write_report(
            runs, root, study, FLAGS.scale
        ),
    )


if __name__ == "__main__":
    define_flags()
    cli.run(main, "warm_start")
