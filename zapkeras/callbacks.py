"""Public API: the Keras callbacks of zapkeras (README "Python API").

Each works in a user's own `model.fit(...)` on a plain Keras model.
"""

from zapkeras.methods.cbp import ContinualBackprop
from zapkeras.methods.hare_tortoise import HareTortoise
from zapkeras.methods.redo import ReDo
from zapkeras.methods.regularizers import RegenerativeL2
from zapkeras.methods.shrink_perturb import HeadReset
from zapkeras.methods.shrink_perturb import ShrinkAndPerturb
from zapkeras.methods.swr import SelectiveWeightReinit
from zapkeras.methods.zapping import Zapping

__all__ = [
    "ContinualBackprop",
    "HareTortoise",
    "HeadReset",
    "ReDo",
    "RegenerativeL2",
    "SelectiveWeightReinit",
    "ShrinkAndPerturb",
    "Zapping",
]
