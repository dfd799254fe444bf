"""The deprecated cadence spellings still work for one release: each warns,
naming the new spelling, and gives the cadence its `every=(n, unit)` does;
giving both is an error."""

import pytest

from zapkeras.errors import UsageError
from zapkeras.methods.hare_tortoise import HareTortoise
from zapkeras.methods.redo import ReDo
from zapkeras.methods.shrink_perturb import HeadReset
from zapkeras.methods.shrink_perturb import ShrinkAndPerturb
from zapkeras.methods.swr import SelectiveWeightReinit
from zapkeras.methods.zapping import Zapping

# (old spelling, new spelling, the old keyword named in the warning)
ALIASES = {
    "swr": (
        lambda: SelectiveWeightReinit(frequency=8, factor=1e-3),
        lambda: SelectiveWeightReinit((8, "steps"), factor=1e-3),
        "frequency",
    ),
    "redo": (
        lambda: ReDo(threshold=0.1, frequency=5),
        lambda: ReDo((5, "steps"), 0.1),
        "frequency",
    ),
    "zapping": (
        lambda: Zapping(every_n_epochs=2),
        lambda: Zapping(every=(2, "epochs")),
        "every_n_epochs",
    ),
    "hare_tortoise": (
        lambda: HareTortoise(reset_every_epochs=3),
        lambda: HareTortoise(every=(3, "epochs")),
        "reset_every_epochs",
    ),
    "shrink_perturb": (
        lambda: ShrinkAndPerturb(
            0.9, 0.01, interpolate_to=None, every="task", every_n=4
        ),
        lambda: ShrinkAndPerturb(
            0.9, 0.01, interpolate_to=None, every=(4, "tasks")
        ),
        "every",
    ),
    "shrink_perturb_step": (
        lambda: ShrinkAndPerturb(0.9, 0.01, interpolate_to=None, every="step"),
        lambda: ShrinkAndPerturb(
            0.9, 0.01, interpolate_to=None, every=(1, "steps")
        ),
        "every",
    ),
    "head_reset": (
        lambda: HeadReset(every="epoch", every_n=2),
        lambda: HeadReset(every=(2, "epochs")),
        "every",
    ),
}


@pytest.mark.parametrize("method", sorted(ALIASES))
def test_alias_warns_and_maps_to_the_same_cadence(method):
    old, new, keyword = ALIASES[method]
    with pytest.warns(DeprecationWarning, match=f"{keyword} is deprecated"):
        legacy = old()
    assert legacy.every == new().every
    assert isinstance(legacy.every, tuple) and len(legacy.every) == 2


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: SelectiveWeightReinit((8, "steps"), 1e-3, frequency=8),
            "not both",
        ),
        (lambda: ReDo((5, "steps"), 0.1, frequency=5), "not both"),
        (lambda: Zapping(every=(1, "epochs"), every_n_epochs=1), "not both"),
        (
            lambda: HareTortoise(every=(3, "epochs"), reset_every_epochs=3),
            "not both",
        ),
        (
            lambda: ShrinkAndPerturb(
                0.9, interpolate_to=None, every=(1, "steps"), every_n=2
            ),
            "every_n is deprecated",
        ),
    ],
)
def test_old_and_new_spelling_together_is_an_error(build, match):
    with pytest.raises(UsageError, match=match):
        build()
