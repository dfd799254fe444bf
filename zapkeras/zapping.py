"""Public API: `zapkeras.zapping.zap` (SPEC §5); implemented in methods/."""

from zapkeras.methods.zapping import zap

__all__ = ["zap"]
