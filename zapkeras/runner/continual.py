"""The continual runner: one network through a continual problem
(hernandez-garcia2025, lee2024, berariu2021)."""

import gin
from zapkeras.data import continual as continual_data
from zapkeras.protocols import base as protocol_base
from zapkeras.runner import base

# The results the HParams dashboard shows (README "Outputs").
_HEADLINE = (
    "test_accuracy",
    "online_accuracy",
    "average_accuracy",
    "fresh_test_accuracy",
)


@gin.configurable(
    denylist=["output_dir", "data_dir", "seed", "strategy", "experiment"]
)
class ContinualRunner(base.Runner):
    """Trains `model_fn`'s network on a continual problem over
    `continual_dataset`; writes results["continual"].

    Args:
      output_dir, data_dir, seed, strategy, experiment: the command line's.
      model_fn: a model factory (as TransferRunner's).
      protocol: the continual protocol (e.g. @continual_learning).
    """

    def __init__(
        self,
        output_dir,
        data_dir,
        seed,
        strategy,
        experiment,
        *,
        model_fn=gin.REQUIRED,
        protocol=gin.REQUIRED,
    ):
        super().__init__(output_dir, data_dir, seed, strategy, experiment)
        self.model_fn = model_fn
        self.protocol = protocol

    def protocols(self):
        return {"": [base.instance(self.protocol, "ContinualRunner.protocol")]}

    def result_paths(self):
        """The key paths of the numbers results.json's continual section
        will hold (`Protocol.result_keys`), without loading any data."""
        (protocol,) = self.protocols()[""]
        return protocol_base.result_paths("continual", protocol)

    def run(self):
        (protocol,) = self.protocols()[""]  # settings first, then data
        train, test = continual_data.continual_dataset(
            data_dir=self.data_dir, seed=self.seed
        )
        data = protocol_base.Data(train=train, test=test)
        protocol.check(data, self.seed)
        protocol_base.build_model(  # a bad model setting fails here
            self.model_fn, train.num_classes, train.images.shape[1:]
        )
        self.start(
            f"{train.num_classes} classes ({len(train.labels)} train / "
            f"{len(test.labels)} test images)"
        )
        shape = train.images.shape[1:]

        def build():
            with self.strategy.scope():
                return protocol_base.build_model(
                    self.model_fn, train.num_classes, shape
                )

        context = self.context(build_model=build)
        model = self.build_model(self.model_fn, train.num_classes, shape)
        result = protocol(model, data, context)
        self.summarize(
            context.writer,
            {f"continual/{k}": result.get(k) for k in _HEADLINE},
        )
        context.writer.close()
        self.save_config()
        return self.finish({"": {"continual": result}})
