"""Public API: `zapkeras.asb.ASB` and `MetaASB` (SPEC §5); implemented in
methods/."""

from zapkeras.methods.asb import ASB
from zapkeras.methods.asb import MetaASB
from zapkeras.methods.asb import episode_batches

__all__ = ["ASB", "MetaASB", "episode_batches"]
