"""An embedded glyph dataset with Omniglot's structure, needing no files.

Each class is a procedurally generated "character": a prototype of 2-4
strokes (polylines, Bezier curves, arcs) in the unit square. Each of its
drawings jitters the prototype's control points, applies a small random
affine map and varies the stroke width, then renders dark antialiased
strokes on a white background. Class k of a split depends only on
(glyph_seed, split, k) and drawing j only on (glyph_seed, split, k, j), so
smaller requests return prefixes of larger ones. Rendering splats Gaussians
along each stroke; the sum is separable in x and y, so one batched matmul
renders a whole chunk of images. Registered as dataset 'embedded'
(zapkeras.data.registry).
"""

import math

import numpy as np

import gin
from zapkeras import settings
from zapkeras.data import registry
from zapkeras.data.types import ClassSets
from zapkeras.data.types import LabeledImages

_MAX_STROKES = 4
_SPLITS = {"background": 0, "evaluation": 1}
# Geometry, in unit-square coordinates.
_MARGIN = 0.14  # the prototype is fitted into [_MARGIN, 1 - _MARGIN]^2
_STROKE_SIGMA = 0.024  # Gaussian profile of a stroke (about 2 px at 28 px)
_INK_GAIN = 3.0  # ink = 1 - exp(-gain * density): saturated, soft edges
# Per-drawing distortion (standard deviations; normals clipped at 2 sd).
_POINT_JITTER = 0.045
_STROKE_SHIFT = 0.03
_ROTATION_DEG = 6.0
_LOG_SCALE = 0.1
_SHEAR = 0.1
_SHIFT = 0.06
_LOG_WIDTH = 0.15
_CHUNK = 1024  # images rendered per batched matmul
_GlyphClasses = settings.PositiveInt(
    note="The glyphs are generated: give how many classes to make."
)


@gin.configurable
@settings.declared("glyph_class_sets")
def glyph_class_sets(
    *,
    background_classes: _GlyphClasses = 964,
    evaluation_classes: _GlyphClasses = 659,
    drawings: settings.PositiveInt = 20,
    image_size: settings.PositiveInt = 28,
    glyph_seed: settings.NonNegativeInt = 0,
):
    """Pretraining ("background") and transfer ("evaluation") glyph classes.

    Defaults match Omniglot's 964 + 659 classes of 20 drawings. The
    `glyph_seed` is the dataset's identity, independent of the run seed.
    """
    return ClassSets(
        pretrain=_glyph_split(
            "background", background_classes, drawings, image_size, glyph_seed
        ),
        transfer=_glyph_split(
            "evaluation", evaluation_classes, drawings, image_size, glyph_seed
        ),
    )


@registry.register("embedded")
def load_embedded(name, data_dir, image_size):
    """The glyph class sets at `image_size` (None: as `glyph_class_sets`
    draws them, its binding or 28) — no files: `data_dir` is not read; the
    other settings come from `glyph_class_sets`' bindings."""
    del name, data_dir
    if image_size is None:
        return glyph_class_sets()
    return glyph_class_sets(image_size=image_size)


def _glyph_split(split, classes, drawings, image_size, glyph_seed):
    """`classes` glyph classes of one split, `drawings` images each."""
    keys = [(glyph_seed, _SPLITS[split], k) for k in range(classes)]
    protos = [_prototype(np.random.default_rng([*key, 0])) for key in keys]
    types, ctrl, width = (np.stack(part) for part in zip(*protos))
    ctrl, width = ctrl.astype(np.float32), width.astype(np.float32)
    # One call per class keeps drawing j independent of `drawings`.
    noise = np.concatenate(
        [
            np.random.default_rng([*key, 1]).standard_normal(
                (drawings, _NOISE_SIZE), dtype=np.float32
            )
            for key in keys
        ]
    )
    owner = np.repeat(np.arange(classes), drawings)
    # Chunks of drawings sorted by stroke count skip unused stroke slots.
    strokes = np.count_nonzero(width, axis=1)[owner]
    order = np.argsort(strokes, kind="stable")
    images = np.empty((len(owner), image_size, image_size), np.float32)
    for chunk in np.array_split(order, -(-len(order) // _CHUNK)):
        used = strokes[chunk].max()
        c = owner[chunk]
        images[chunk] = _render(
            *_drawings(
                types[c, :used],
                ctrl[c, :used],
                width[c, :used],
                np.clip(noise[chunk], -2, 2),
            ),
            image_size,
        )
    return LabeledImages(
        images=images[..., None],
        labels=owner.astype(np.int32),
        class_names=tuple(f"{split}/glyph{k:04d}" for k in range(classes)),
    )


def _prototype(rng):
    """(types [S], control points [S, 4, 2], width multipliers [S])."""
    strokes = int(rng.integers(2, _MAX_STROKES + 1))
    types = rng.integers(0, 3, size=_MAX_STROKES)
    ctrl = np.zeros((_MAX_STROKES, 4, 2))
    for s in range(strokes):
        ctrl[s] = _STROKE_MAKERS[types[s]](rng)
        if s and rng.random() < 0.6:  # attach to an earlier stroke
            anchor = ctrl[rng.integers(s), rng.integers(4)]
            end = 3 * rng.integers(2)
            ctrl[s] += anchor - ctrl[s, end]
    # Fit the glyph's curve into the margin box, keeping its aspect ratio.
    curve = _BASES[types[:strokes]] @ ctrl[:strokes]
    low, high = curve.reshape(-1, 2).min(0), curve.reshape(-1, 2).max(0)
    scale = (1 - 2 * _MARGIN) / max((high - low).max(), 0.15)
    ctrl[:strokes] = (ctrl[:strokes] - (low + high) / 2) * scale + 0.5
    width = np.exp(rng.normal(0.0, 0.1, size=_MAX_STROKES))
    width[strokes:] = 0.0  # unused stroke slots draw nothing
    return types, ctrl, width


def _polyline(rng):
    """A random walk of 2-3 straight segments with sharp turns."""
    start = rng.uniform(0.2, 0.8, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    turns = rng.choice([-1, 1], size=3) * rng.uniform(0.8, 2.6, size=3)
    angles = angle + np.concatenate([[0.0], np.cumsum(turns[:2])])
    lengths = rng.uniform(0.22, 0.5, size=3)
    if rng.random() < 0.4:  # two segments: the last one has no length
        lengths[2] = 0.0
    steps = np.stack([np.cos(angles), np.sin(angles)], -1) * lengths[:, None]
    return np.concatenate([[start], start + np.cumsum(steps, 0)])


def _bezier(rng):
    """A cubic Bezier curve between two distant points."""
    ends = rng.uniform(0.15, 0.85, size=(2, 2))
    while np.linalg.norm(ends[1] - ends[0]) < 0.35:
        ends[1] = rng.uniform(0.15, 0.85, size=2)
    handles = rng.uniform(0.0, 1.0, size=(2, 2))
    return np.stack([ends[0], handles[0], handles[1], ends[1]])


def _arc(rng):
    """Four points on a circular arc, joined by a Catmull-Rom spline."""
    center = rng.uniform(0.35, 0.65, size=2)
    radius = rng.uniform(0.15, 0.35)
    sweep = rng.choice([-1, 1]) * rng.uniform(np.pi / 2, 1.7 * np.pi)
    angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, sweep, 4)
    return center + radius * np.stack([np.cos(angles), np.sin(angles)], -1)


# A stroke's type indexes both this tuple and the bases of `_bases`.
_STROKE_MAKERS = (_polyline, _bezier, _arc)


def _bases(samples):
    """[3, samples, 4] maps from 4 control points to points on a stroke."""
    t = np.linspace(0.0, 1.0, samples)
    # Polyline: piecewise-linear "hat" weights, vertices at t = 0, 1/3, ...
    poly = np.maximum(0.0, 1.0 - np.abs(3 * t[:, None] - np.arange(4)))
    powers = np.arange(4)
    bezier = (
        np.array([1, 3, 3, 1])
        * t[:, None] ** powers
        * (1 - t[:, None]) ** powers[::-1]
    )
    # Catmull-Rom through the 4 points: cubic Hermite segments whose
    # tangents m_i = (p_{i+1} - p_{i-1}) / 2 (one-sided at the ends) are
    # themselves linear in the control points.
    seg = np.minimum((3 * t).astype(int), 2)
    u = (3 * t - seg)[:, None]
    tangent = np.array(
        [[-1, 1, 0, 0], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5], [0, 0, -1, 1]]
    )
    eye = np.eye(4)
    spline = (
        (2 * u**3 - 3 * u**2 + 1) * eye[seg]
        + (u**3 - 2 * u**2 + u) * tangent[seg]
        + (-2 * u**3 + 3 * u**2) * eye[seg + 1]
        + (u**3 - u**2) * tangent[seg + 1]
    )
    return np.stack([poly, bezier, spline]).astype(np.float32)


# Curves are evaluated densely (3 divides _DENSE - 1, so polyline corners
# are hit), then resampled evenly in arc length for rendering.
_DENSE = 61
_BASES = _bases(_DENSE)
_SAMPLES = 48  # rendered points per stroke
_MAX_SPACING = 1.6  # sample spacing / Gaussian sigma above which strokes bead
_NOISE_SIZE = _MAX_STROKES * 11 + 6


def _drawings(types, ctrl, width, noise):
    """Points [n, P, 2], weights [n, P] and sigmas [n, P] of n drawings.

    `types`, `ctrl` and `width` are the prototypes' first strokes, `noise`
    the drawings' clipped standard normals.
    """
    n, used = types.shape
    jitter, shift, pressure, affine = np.split(
        noise, np.cumsum([8, 2, 1]) * _MAX_STROKES, axis=1
    )
    ctrl = (
        ctrl
        + _POINT_JITTER * jitter.reshape(n, -1, 4, 2)[:, :used]
        + _STROKE_SHIFT * shift.reshape(n, -1, 1, 2)[:, :used]
    )
    angle = np.deg2rad(_ROTATION_DEG) * affine[:, 0]
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([cos, -sin, sin, cos], -1).reshape(n, 2, 2)
    shear = np.eye(2, dtype=np.float32) + _SHEAR * affine[:, 3, None, None] * (
        np.array([[0, 1], [0, 0]], np.float32)
    )
    matrix = rotation @ shear * np.exp(_LOG_SCALE * affine[:, None, 1:3])
    offset = 0.5 + _SHIFT * affine[:, None, None, 4:6]
    ctrl = (ctrl - 0.5) @ matrix.transpose(0, 2, 1)[:, None] + offset
    dense = np.empty((n, used, _DENSE, 2), np.float32)
    for kind, basis in enumerate(_BASES):
        dense[types == kind] = basis @ ctrl[types == kind]
    points, spacing = _even_in_arc_length(dense.reshape(n * used, _DENSE, 2))
    spacing = spacing.reshape(n, used)
    ends = np.ones(_SAMPLES, np.float32)
    ends[[0, -1]] = 0.5  # trapezoid rule along the stroke
    weights = spacing[..., None] * ends * (width > 0)[..., None]
    sigma = np.maximum(
        _STROKE_SIGMA * width * np.exp(_LOG_WIDTH * pressure[:, :used]),
        np.maximum(spacing / _MAX_SPACING, 1e-3),
    )
    return (
        points.reshape(n, -1, 2),
        weights.reshape(n, -1),
        np.repeat(sigma, _SAMPLES, axis=1),
    )


def _even_in_arc_length(dense):
    """[m, _SAMPLES, 2] points evenly spaced along each polyline of `dense`
    [m, D, 2], and the spacing [m]."""
    step = np.diff(dense.astype(np.float64), axis=1)
    cum = np.cumsum(np.hypot(step[..., 0], step[..., 1]), axis=1)
    cum = np.concatenate([np.zeros((len(cum), 1)), cum], axis=1)
    length = cum[:, -1:]
    # One np.interp for all polylines: shifting each by its row index
    # (times more than any length) makes the whole table increasing.
    shift = np.arange(len(cum))[:, None] * (length.max() + 1.0)
    targets = (np.linspace(0.0, 1.0, _SAMPLES) * length + shift).ravel()
    table = (cum + shift).ravel()
    points = np.stack(
        [np.interp(targets, table, dense[..., i].ravel()) for i in (0, 1)],
        axis=-1,
    )
    return (
        points.reshape(len(cum), _SAMPLES, 2).astype(np.float32),
        (length[:, 0] / (_SAMPLES - 1)).astype(np.float32),
    )


def _render(points, weights, sigmas, size):
    """[n, size, size] float32 images: dark strokes on white, in [0, 1].

    Ink density is a sum of Gaussians along the strokes, normalised so a
    straight stroke has density 1 on its centre line.
    """
    centers = (np.arange(size, dtype=np.float32) + 0.5) / size
    scale = -0.5 / sigmas**2
    gx = np.exp(scale[..., None] * (points[..., 0, None] - centers) ** 2)
    gy = np.exp(
        scale[:, None] * (centers[:, None] - points[:, None, :, 1]) ** 2
    )
    gy *= weights[:, None] / (math.sqrt(2 * math.pi) * sigmas[:, None])
    density = np.matmul(gy, gx)  # [n, H, P] @ [n, P, W]
    return np.exp(-_INK_GAIN * density)
