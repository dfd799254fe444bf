"""Public API: `zapkeras.zapping.zap` (README "Python API"); implemented in
methods/."""

from zapkeras.methods.zapping import zap

__all__ = ["zap"]
