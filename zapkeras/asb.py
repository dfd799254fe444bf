"""Public API: `zapkeras.asb.ASB` and `MetaASB` (README "Python API");
implemented in methods/."""

from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import MetaASB
from zapkeras.methods.asb import episode_batches

__all__ = ["ASB", "MetaASB", "episode_batches"]
