"""The one exception type for user mistakes.

Anything raised as `UsageError` is reported by the command-line entry points
as a short message with exit status 2 and no traceback. The message must name
the setting at fault and say how to fix it.
"""


class UsageError(Exception):
    """A mistake in the user's flags, gin bindings, data or hyperparameters."""
