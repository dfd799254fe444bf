"""The runners and `create_runner`, which the gin config chooses between
(as Dopamine's `create_runner`): `create_runner.kind = 'transfer'`
(default: pretraining → transfer, `TransferRunner.*`) or `'continual'`
(`ContinualRunner.*`). A setting bound for the runner not chosen exits 2
naming it, instead of being silently ignored."""

import inspect

import gin
from zapkeras.errors import UsageError
from zapkeras.runner.continual import ContinualRunner
from zapkeras.runner.transfer import TransferRunner

RUNNERS = {"transfer": TransferRunner, "continual": ContinualRunner}


def _bound(cls):
    """The names of `cls`'s settings the gin config binds."""
    names = []
    for parameter in inspect.signature(cls.__init__).parameters.values():
        if parameter.kind is not parameter.KEYWORD_ONLY:
            continue
        try:
            gin.query_parameter(f"{cls.__name__}.{parameter.name}")
        except ValueError:
            continue
        names.append(f"{cls.__name__}.{parameter.name}")
    return names


@gin.configurable(
    denylist=["output_dir", "data_dir", "seed", "strategy", "experiment"]
)
def create_runner(
    output_dir, data_dir, seed, strategy, experiment, *, kind="transfer"
):
    """The runner of the gin config's `kind`, built with the command
    line's settings."""
    if kind not in RUNNERS:
        raise UsageError(
            f"create_runner.kind = {kind!r}; use 'transfer' (pretraining → "
            "transfer) or 'continual'."
        )
    for other, cls in RUNNERS.items():
        unused = _bound(cls) if other != kind else []
        if unused:
            raise UsageError(
                f"{', '.join(unused)} bound, but this config runs a {kind} "
                f"experiment (create_runner.kind = {kind!r}), which does "
                "not use it; remove the binding or set create_runner.kind."
            )
    return RUNNERS[kind](output_dir, data_dir, seed, strategy, experiment)
