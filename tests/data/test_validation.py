"""Every setting of the data configurables is checked with zapkeras.validate:
a wrong type or a value out of range is a UsageError naming the setting
(the macro where the message is about one), never a TypeError or
ValueError from deeper down; edge values that are allowed still work and
give the same data as before."""

import numpy as np
import pytest

import gin
from zapkeras import data
from zapkeras.data import continual
from zapkeras.data import streams
from zapkeras.data import warm_start
from zapkeras.data.types import LabeledImages
from zapkeras.errors import UsageError


def _images(n=40, classes=4):
    return LabeledImages(
        images=np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2, 1) / n,
        labels=(np.arange(n) % classes).astype(np.int32),
        class_names=tuple(f"c{k}" for k in range(classes)),
    )


def _load_class_sets(**kwargs):
    return data.load_class_sets("embedded", None, **kwargs)


def _glyphs(**kwargs):
    small = {"background_classes": 2, "evaluation_classes": 2}
    small.update(drawings=2, image_size=8)
    return data.glyph_class_sets(**{**small, **kwargs})


def _continual_dataset(**kwargs):
    gin.parse_config(
        [
            "glyph_class_sets.background_classes = 3",
            "glyph_class_sets.evaluation_classes = 2",
            "glyph_class_sets.drawings = 4",
        ]
    )
    try:
        kwargs = {"data_dir": None, "image_size": 8, **kwargs}
        return continual.continual_dataset("embedded", **kwargs)
    finally:
        gin.clear_config()


def _problem(factory, **defaults):
    def build(**kwargs):
        images = _images()
        kwargs = {"seed": 0, **defaults, **kwargs}
        return factory(images, images, **kwargs)

    return build


def _split(**kwargs):
    return streams.split_per_class(_images(n=40, classes=2), **kwargs)


def _asb(**kwargs):
    return streams.asb_episodes(_images(), **kwargs)


PERMUTED = _problem(continual.permuted_tasks, tasks=2)
CLASS_INCREMENTAL = _problem(
    continual.class_incremental_tasks,
    tasks=2,
    classes_first=2,
    classes_per_task=2,
)
WARM_START = _problem(warm_start.warm_start_tasks, tasks=2)
MULTI_STAGE = _problem(warm_start.multi_stage_tasks, tasks=2)

# (configurable, bad keyword arguments, text the message must contain)
CASES = {
    "load_class_sets": (
        _load_class_sets,
        [
            ({"image_size": None}, "load_class_sets.image_size"),
            ({"image_size": "28"}, "load_class_sets.image_size"),
            ({"image_size": 0}, "load_class_sets.image_size"),
            ({"image_size": 28.0}, "load_class_sets.image_size"),
            ({"image_size": True}, "load_class_sets.image_size"),
            ({"pretrain_classes": "abc"}, "load_class_sets.pretrain_classes"),
            ({"pretrain_classes": 2.5}, "load_class_sets.pretrain_classes"),
            ({"pretrain_classes": 0}, "load_class_sets.pretrain_classes"),
            ({"seed": -1}, "load_class_sets.seed"),
            ({"seed": "0"}, "load_class_sets.seed"),
            (
                {"pretrain_fraction": "half"},
                "load_class_sets.pretrain_fraction",
            ),
            ({"pretrain_fraction": None}, "load_class_sets.pretrain_fraction"),
            ({"pretrain_fraction": 0.0}, "load_class_sets.pretrain_fraction"),
            ({"pretrain_fraction": 1.0}, "load_class_sets.pretrain_fraction"),
            ({"normalize": "cifar"}, "load_class_sets.normalize"),
            ({"normalize": 1}, "load_class_sets.normalize"),
        ],
    ),
    "load_class_sets-data_dir": (
        lambda **kw: data.load_class_sets("embedded", **kw),
        [({"data_dir": 3}, "--data_dir")],
    ),
    "glyph_class_sets": (
        _glyphs,
        [
            (
                {"background_classes": 1e9},
                "glyph_class_sets.background_classes",
            ),
            (
                {"background_classes": "x"},
                "glyph_class_sets.background_classes",
            ),
            (
                {"background_classes": None},
                "glyph_class_sets.background_classes",
            ),
            ({"background_classes": 0}, "glyph_class_sets.background_classes"),
            (
                {"evaluation_classes": 2.5},
                "glyph_class_sets.evaluation_classes",
            ),
            ({"evaluation_classes": -1}, "glyph_class_sets.evaluation_classes"),
            ({"drawings": "20"}, "glyph_class_sets.drawings"),
            ({"drawings": 0}, "glyph_class_sets.drawings = 0"),
            ({"image_size": None}, "glyph_class_sets.image_size"),
            ({"glyph_seed": -1}, "glyph_class_sets.glyph_seed"),
            ({"glyph_seed": 0.5}, "glyph_class_sets.glyph_seed"),
        ],
    ),
    "continual_dataset": (
        _continual_dataset,
        [
            ({"classes": "x"}, "continual_dataset.classes"),
            ({"classes": 2.5}, "continual_dataset.classes"),
            ({"classes": 0}, "continual_dataset.classes"),
            ({"classes": 10**6}, "continual_dataset.classes"),
            ({"image_size": "28"}, "continual_dataset.image_size"),
            ({"image_size": -28}, "continual_dataset.image_size"),
            ({"test_fraction": "half"}, "continual_dataset.test_fraction"),
            ({"test_fraction": 0}, "continual_dataset.test_fraction"),
            ({"test_fraction": 1.0}, "continual_dataset.test_fraction"),
            ({"invert": "yes"}, "continual_dataset.invert"),
            ({"invert": 1}, "continual_dataset.invert"),
            ({"seed": -1}, "--seed"),
            ({"data_dir": ["/data"]}, "--data_dir"),
        ],
    ),
    "permuted_tasks": (
        PERMUTED,
        [
            ({"tasks": 2.5}, "permuted_tasks.tasks"),
            ({"tasks": "x"}, "permuted_tasks.tasks"),
            ({"tasks": None}, "permuted_tasks.tasks"),
            ({"tasks": 0}, "permuted_tasks.tasks"),
            ({"epochs_per_task": "1"}, "permuted_tasks.epochs_per_task"),
            ({"epochs_per_task": 0}, "permuted_tasks.epochs_per_task"),
            ({"seed": -1}, "--seed"),
            ({"seed": 1.5}, "--seed"),
        ],
    ),
    "class_incremental_tasks": (
        CLASS_INCREMENTAL,
        [
            ({"tasks": (2,)}, "class_incremental_tasks.tasks"),
            ({"epochs_per_task": -1}, "epochs_per_task"),
            ({"classes_first": "x"}, "class_incremental_tasks.classes_first"),
            ({"classes_first": 0}, "class_incremental_tasks.classes_first"),
            (
                {"classes_per_task": 2.5},
                "class_incremental_tasks.classes_per_task",
            ),
            ({"classes_per_task": 0}, "class_incremental_tasks.classes_per"),
            ({"classes_per_task": 3}, "classes_per_task = 3 and TASKS = 2"),
            ({"accumulate": "yes"}, "class_incremental_tasks.accumulate"),
            (
                {"validation_fraction": "half"},
                "class_incremental_tasks.validation_fraction",
            ),
            ({"validation_fraction": 1.0}, "validation_fraction"),
            ({"validation_fraction": -0.1}, "validation_fraction"),
            ({"validation_fraction": None}, "validation_fraction"),
        ],
    ),
    "warm_start_tasks": (
        WARM_START,
        [
            ({"tasks": "2"}, "warm_start_tasks.tasks"),
            ({"epochs_per_task": 2.5}, "warm_start_tasks.epochs_per_task"),
            ({"first_ratio": "x"}, "warm_start_tasks.first_ratio"),
            ({"first_ratio": 0}, "warm_start_tasks.first_ratio"),
            ({"first_ratio": 1.0}, "warm_start_tasks.first_ratio"),
            ({"max_noise": 2}, "warm_start_tasks.max_noise"),
            ({"max_noise": "x"}, "warm_start_tasks.max_noise"),
            ({"data_ratios": 0.5}, "warm_start_tasks.data_ratios"),
            ({"data_ratios": ("a", "b")}, "warm_start_tasks.data_ratios"),
            ({"data_ratios": "ab"}, "warm_start_tasks.data_ratios"),
            ({"data_ratios": (0.5, 0.0)}, "warm_start_tasks.data_ratios"),
            ({"data_ratios": (0.5,)}, "warm_start_tasks.data_ratios"),
            (
                {"label_noise_ratios": (0.5, "x")},
                "warm_start_tasks.label_noise_ratios",
            ),
            (
                {"label_noise_ratios": (0.5, -0.1)},
                "warm_start_tasks.label_noise_ratios",
            ),
            ({"scale_epochs": "yes"}, "warm_start_tasks.scale_epochs"),
            ({"buffer_size": -1}, "warm_start_tasks.buffer_size"),
            ({"buffer_size": 2.5}, "warm_start_tasks.buffer_size"),
            ({"smooth_shift": "x"}, "warm_start_tasks.smooth_shift"),
            ({"smooth_shift": 1.0}, "warm_start_tasks.smooth_shift"),
            ({"smooth_shift": 0}, "warm_start_tasks.smooth_shift"),
        ],
    ),
    "multi_stage_tasks": (
        MULTI_STAGE,
        [
            ({"tasks": 2.0}, "multi_stage_tasks.tasks"),
            ({"tasks": 5}, "TASKS (multi_stage_tasks.tasks) = 5"),
            ({"epochs_per_task": None}, "multi_stage_tasks.epochs_per_task"),
            ({"uniform_ratio": "x"}, "multi_stage_tasks.uniform_ratio"),
            ({"uniform_ratio": 1.5}, "multi_stage_tasks.uniform_ratio"),
            ({"first_epochs": -1}, "multi_stage_tasks.first_epochs"),
            ({"first_epochs": 2.5}, "multi_stage_tasks.first_epochs"),
            ({"smooth_shift": "x"}, "multi_stage_tasks.smooth_shift"),
            ({"smooth_shift": -0.5}, "multi_stage_tasks.smooth_shift"),
        ],
    ),
    "split_per_class": (
        _split,
        [
            ({"train_per_class": "15"}, "train_per_class"),
            ({"train_per_class": 0}, "train_per_class"),
            ({"train_per_class": 20}, "train_per_class"),
        ],
    ),
    "steps_per_epoch": (
        lambda **kw: streams.steps_per_epoch(10, **kw),
        [
            ({"batch_size": 2.5}, "batch_size"),
            ({"batch_size": "8"}, "batch_size"),
            ({"batch_size": 0}, "batch_size"),
        ],
    ),
    "sequential_stream": (
        lambda **kw: streams.sequential_stream(_images(), **kw),
        [
            ({"class_order": ["a"]}, "class_order"),
            ({"class_order": None}, "class_order"),
            ({"class_order": [0, 0]}, "class_order"),
        ],
    ),
    "asb_episodes": (
        _asb,
        [
            ({"inner_steps": 2.5}, "inner_steps"),
            ({"inner_steps": 0}, "inner_steps"),
            ({"remember": "x"}, "remember"),
            ({"remember": -1}, "remember"),
            ({"remember": 41}, "remember"),
        ],
    ),
}

_FLAT = [
    pytest.param(name, i, id=f"{name}-{i}-{next(iter(kwargs))}")
    for name, (_, cases) in CASES.items()
    for i, (kwargs, _) in enumerate(cases)
]


@pytest.mark.parametrize("name, i", _FLAT)
def test_a_bad_setting_is_a_usage_error_naming_it(name, i):
    configurable, cases = CASES[name]
    kwargs, expected = cases[i]
    with pytest.raises(UsageError) as error:
        configurable(**kwargs)
    assert expected in str(error.value)


def test_a_bound_macro_is_named():
    gin.parse_config(
        [
            "PRETRAIN_CLASSES = None",
            "glyph_class_sets.background_classes = %PRETRAIN_CLASSES",
            "load_class_sets.pretrain_classes = %PRETRAIN_CLASSES",
        ]
    )
    try:
        with pytest.raises(UsageError) as error:
            data.load_class_sets("embedded", None)
    finally:
        gin.clear_config()
    assert str(error.value).startswith(
        "PRETRAIN_CLASSES (glyph_class_sets.background_classes) = None;"
    )


@pytest.mark.parametrize(
    "build, kwargs",
    [
        (CLASS_INCREMENTAL, {"validation_fraction": 0}),
        (WARM_START, {"buffer_size": 0, "max_noise": 0, "smooth_shift": 0.5}),
        (WARM_START, {"tasks": 1, "first_ratio": 1}),
        (WARM_START, {"first_ratio": 1.0, "data_ratios": (1.0, 0.5)}),
        (MULTI_STAGE, {"uniform_ratio": 0, "first_epochs": 0}),
        (PERMUTED, {"tasks": np.int64(2), "epochs_per_task": np.int32(1)}),
    ],
)
def test_allowed_edge_values_still_build(build, kwargs):
    assert build(**kwargs).num_tasks == kwargs.get("tasks", 2)


def test_numpy_settings_give_the_same_data_as_python_ones():
    plain = WARM_START(tasks=3, epochs_per_task=4, buffer_size=5)
    numpy = WARM_START(
        tasks=np.int64(3),
        epochs_per_task=np.int32(4),
        buffer_size=np.int64(5),
        seed=np.int64(0),
    )
    assert plain.describe() == numpy.describe()
    for a, b in zip(plain.phases, numpy.phases):
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.epochs == b.epochs
    a, b = _glyphs(glyph_seed=np.int64(1)), _glyphs(glyph_seed=1)
    np.testing.assert_array_equal(a.pretrain.images, b.pretrain.images)
    np.testing.assert_array_equal(a.transfer.images, b.transfer.images)
