"""Warm-start problems: the data of phase t extends phase t − 1's.

- `warm_start_tasks`: lee2024's warm-start (2 phases) and continual (10
  phases) protocols: accumulated random subsets with per-phase label noise,
  epochs = base / ratio (lee2024 §3.1, App. A.3; docs/reference_codes.md §3.3,
  the reference's PartialImageFolder).
- `multi_stage_tasks`: berariu2021's data revealed in stages, uniform or
  class-imbalanced (§2 Fig. 4, App. A.3).

Both accept `smooth_shift` (berariu2021 App. A.2, see continual.py). Every
phase is tested on the whole clean test set, and by default a fresh
network trained on the final phase gives the generalisation gap.
"""

import numpy as np

import gin
from zapkeras import settings
from zapkeras import validate
from zapkeras.data import continual
from zapkeras.errors import UsageError

# Random streams (continual.py uses 0-4).
_SUBSET, _NOISE = 5, 6

# γ of a smooth shift in (0, 1), or None (abrupt).
SmoothShift = settings.Maybe(
    settings.Fraction(
        low_open=True,
        high_open=True,
        example=0.9,
        note="The probability of new data is 1 − γ^(50·n/N); None changes "
        "phases abruptly.",
    )
)
_BufferSize = settings.Maybe(
    settings.NonNegativeInt(
        example=1000, note="None keeps all the previous phase's examples."
    )
)
_UniformRatio = settings.Fraction(
    note="1: uniform stages; less: class-imbalanced ones."
)
_FirstRatio = settings.Fraction(
    low_open=True,
    note="The share of the data in the first phase; the later phases share "
    "the rest (unless data_ratios is given).",
)
_FirstEpochs = settings.Maybe(
    settings.NonNegativeInt(note="None: EPOCHS_PER_TASK.")
)


class PhasedProblem(continual.Problem):
    """Warm-start phases: every phase is tested on the whole clean test
    set, so there is no per-task test set and no accuracy matrix."""

    has_task_tests = False
    fresh_baseline = True

    def __init__(self, name, train, test, seed, phases, smooth_shift, **info):
        super().__init__(
            train, test, seed, phases, [train.num_classes] * len(phases)
        )
        self.name = name
        self.smooth_shift = SmoothShift.apply(
            smooth_shift, f"{name}_tasks.smooth_shift"
        )
        self.info = info

    def task_test(self, task):
        del task
        return self.test.images, self.test.labels

    def describe(self):
        return {
            **super().describe(),
            "examples_per_phase": [len(p.index) for p in self.phases],
            "epochs_per_phase": [p.epochs for p in self.phases],
            "smooth_shift": self.smooth_shift,
            **self.info,
        }


def noisy_labels(labels, ratio, num_classes, rng):
    """int(n · ratio) labels replaced by a uniformly drawn different class
    (lee2024 §3.1 after Zhang et al.; the reference redraws per phase)."""
    labels = np.array(labels, np.int32)
    count = int(len(labels) * ratio + 1e-9)
    chosen = rng.choice(len(labels), count, replace=False)
    shift = rng.integers(1, num_classes, count)
    labels[chosen] = (labels[chosen] + shift) % num_classes
    return labels


def _ratios(setting, values, tasks, *, low_open=False, note=None):
    """`values` as a tuple of TASKS fractions in [0, 1] ((0, 1] with
    `low_open`)."""

    def ratio(value, name):
        return validate.fraction(value, name, low_open=low_open)

    return validate.sequence(
        values,
        setting,
        ratio,
        what=f"{tasks} fractions in {'(0' if low_open else '[0'}, 1], one per "
        f"task (TASKS = {tasks})",
        length=tasks,
        example=(0.5,) * tasks,
        note=note,
    )


@gin.configurable(denylist=["train", "test", "seed"])
@settings.declared("warm_start_tasks")
def warm_start_tasks(
    train,
    test,
    seed,
    *,
    tasks: settings.PositiveInt = 2,
    epochs_per_task: settings.PositiveInt = 100,
    first_ratio: _FirstRatio = 0.1,
    max_noise: settings.Fraction = 0.5,
    data_ratios=None,
    label_noise_ratios=None,
    scale_epochs: settings.Bool = True,
    buffer_size: _BufferSize = None,
    smooth_shift: SmoothShift = None,
):
    """lee2024's warm-start (TASKS=2) and continual (TASKS=10) phases.

    Phase t trains on the previous phase's examples (the first
    `buffer_size` of them; None keeps all) plus int(N · data_ratios[t]) new
    random ones, with int(n · label_noise_ratios[t]) labels replaced by a
    different random class, for int(EPOCHS_PER_TASK / data_ratios[t])
    epochs (`scale_epochs`; else EPOCHS_PER_TASK). Defaults follow TASKS:
    ratios (first_ratio, then equal shares of the rest) and noise falling
    linearly from `max_noise` to 0, rounded to 0.1 — exactly the
    reference's [0.1, 0.9] / [0.5, 0.0] for 2 phases and 10 × 0.1 /
    [0.5, 0.4, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.0] for 10.
    """
    setting = "warm_start_tasks."
    seed = continual.check_seed(seed)
    defaults = data_ratios is None and tasks > 1
    if defaults and first_ratio == 1:
        raise UsageError(
            f"warm_start_tasks.first_ratio = 1.0 leaves no data for the "
            f"other {tasks - 1} phases; use a value in (0, 1), e.g. 0.1, or "
            "give data_ratios."
        )
    if data_ratios is None:
        rest = (1.0 - first_ratio) / max(tasks - 1, 1)
        data_ratios = [first_ratio] + [round(rest, 10)] * (tasks - 1)
    if label_noise_ratios is None:
        label_noise_ratios = [
            round(max_noise * (1 - t / (tasks - 1)), 1) if tasks > 1 else 0.0
            for t in range(tasks)
        ]
    ratios = _ratios(
        setting + "data_ratios",
        data_ratios,
        tasks,
        low_open=True,
        note="Every phase must add data (ratios > 0).",
    )
    noise = _ratios(setting + "label_noise_ratios", label_noise_ratios, tasks)
    n = len(train.labels)
    phases, previous = [], np.zeros(0, np.int64)
    for t, (ratio, noise_t) in enumerate(zip(ratios, noise)):
        unused = np.setdiff1d(np.arange(n), previous)
        new = continual.task_rng(seed, _SUBSET, t).permutation(unused)
        index = np.concatenate(
            [previous[:buffer_size], new[: int(n * ratio + 1e-9)]]
        )
        labels = noisy_labels(
            train.labels[index],
            noise_t,
            train.num_classes,
            continual.task_rng(seed, _NOISE, t),
        )
        epochs = (
            int(epochs_per_task / ratio + 1e-9)
            if scale_epochs
            else epochs_per_task
        )
        phases.append(continual.Phase(index, labels, epochs))
        previous = index
    return PhasedProblem(
        "warm_start",
        train,
        test,
        seed,
        phases,
        smooth_shift,
        data_ratios=list(ratios),
        label_noise_ratios=list(noise),
    )


@gin.configurable(denylist=["train", "test", "seed"])
@settings.declared("multi_stage_tasks")
def multi_stage_tasks(
    train,
    test,
    seed,
    *,
    tasks: settings.PositiveInt = 2,
    epochs_per_task: settings.PositiveInt = 100,
    uniform_ratio: _UniformRatio = 1.0,
    first_epochs: _FirstEpochs = None,
    smooth_shift: SmoothShift = None,
):
    """berariu2021 App. A.3: TASKS − 1 pretraining stages, then all data.

    The classes are partitioned into TASKS groups C_i and the examples into
    D_u (a random `uniform_ratio` of them) and D_c (the rest); D_u is cut
    into TASKS parts, and stage i adds part i of D_u plus the examples of
    D_c whose class is in C_i, so the last stage holds all the data.
    `uniform_ratio=1` gives uniform splits (their Fig. 4 left), smaller
    values class-imbalanced stages (Fig. 4 right). Every stage trains for
    EPOCHS_PER_TASK epochs, so steps grow with the data, as in the paper;
    `first_epochs` overrides the first stage's (0 skips it: with TASKS = 2
    and `smooth_shift`, training starts on the shifting mixture, their
    single-stage Fig. 3).
    """
    seed = continual.check_seed(seed)
    if tasks > train.num_classes:
        raise UsageError(
            f"TASKS (multi_stage_tasks.tasks) = {tasks} stages but the "
            f"dataset has {train.num_classes} classes; use at most as many "
            "stages as classes."
        )
    rng = continual.task_rng(seed, _SUBSET)
    groups = np.array_split(rng.permutation(train.num_classes), tasks)
    order = rng.permutation(len(train.labels))
    uniform = order[: int(round(uniform_ratio * len(order)))]
    by_class = order[len(uniform) :]
    phases, index = [], np.zeros(0, np.int64)
    for part, group in zip(np.array_split(uniform, tasks), groups):
        stage = by_class[np.isin(train.labels[by_class], group)]
        index = np.concatenate([index, part, stage])
        epochs = epochs_per_task
        if not phases and first_epochs is not None:
            epochs = first_epochs
        phases.append(continual.Phase(index, train.labels[index], epochs))
    return PhasedProblem("multi_stage", train, test, seed, phases, smooth_shift)
