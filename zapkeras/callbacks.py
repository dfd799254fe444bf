"""Public API: the Keras callbacks of zapkeras (SPEC §5).

Each works in a user's own `model.fit(...)` on a plain Keras model.
"""

from zapkeras.methods.zapping import Zapping

__all__ = ["Zapping"]
