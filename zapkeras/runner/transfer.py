"""The transfer runner: data → model → pretraining → transfers → analyses.

One run pretrains a model and transfers it with each configured protocol.
`conditions` (gin scope names) repeat that for several pretraining
conditions on the same data and from the same initial weights, e.g.
`('iid', 'iid_zap')` with `iid_zap/iid_pretraining.zapping = @Zapping()`,
and print a comparison table. Every transfer protocol and every analysis
starts from the pretrained weights, restored before each (a full-model
transfer changes them), as the reference code reloads the pretrained model
for every evaluation type.
"""

import os

import gin
from zapkeras import data as data_lib
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import tensorboard
from zapkeras.protocols import base as protocol_base
from zapkeras.protocols.pretrain import IidPretraining
from zapkeras.protocols.transfer import SequentialTransfer
from zapkeras.runner import base

_HEAD_OUTPUTS = settings.Maybe(settings.PositiveInt(example=1000))


class _Condition:
    """One condition's protocol objects, constructed under its scope."""

    def __init__(self, runner):
        self.pretraining = base.instance(
            runner.pretraining, "TransferRunner.pretraining"
        )
        self.transfers = {
            name: base.instance(p, f"TransferRunner.transfers[{name!r}]")
            for name, p in runner.transfers.items()
        }
        self.analyses = {
            name: base.instance(p, f"TransferRunner.analyses[{name!r}]")
            for name, p in runner.analyses.items()
        }

    def all(self):
        return [
            self.pretraining,
            *self.transfers.values(),
            *self.analyses.values(),
        ]


@gin.configurable(
    denylist=["output_dir", "data_dir", "seed", "strategy", "experiment"]
)
@settings.declared("TransferRunner")
class TransferRunner(base.Runner):
    """Pretraining → transfer experiments (frati2024, frati2025).

    Args:
      output_dir, data_dir, seed, strategy, experiment: the command line's.
      model_fn: a model factory, called with num_classes= and those of
        input_shape=, image_size=, channels= it accepts.
      head_outputs: classifier size; None = number of pretraining classes
        (frati2024's Omniglot head has 1000 outputs for 964 classes).
      train_per_class: pretraining images per class; the rest validate.
      pretraining: the pretraining protocol (e.g. @iid_pretraining).
      transfers: {name: protocol} run after pretraining, e.g.
        {'sequential': @sequential_transfer}.
      analyses: {name: protocol} measurements of the pretrained model on
        its pretraining data, e.g. {'zap_divergence': @zap_divergence}.
      conditions: gin scope names of pretraining conditions to compare, or
        None for a single run.
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
        head_outputs: _HEAD_OUTPUTS = None,
        train_per_class: settings.PositiveInt = 15,
        pretraining=IidPretraining,
        transfers=None,
        analyses=None,
        conditions=None,
    ):
        super().__init__(output_dir, data_dir, seed, strategy, experiment)
        self.model_fn = model_fn
        self.head_outputs = head_outputs
        self.train_per_class = train_per_class
        self.pretraining = pretraining
        self.transfers = transfers or {"sequential": SequentialTransfer}
        self.analyses = analyses or {}
        self.conditions = tuple(conditions or ("",))

    def _build_conditions(self):
        """{condition: its protocols}, each constructed under the
        condition's gin scope, which validates its settings."""
        conditions = {}
        for condition in self.conditions:
            with gin.config_scope(condition or None):
                conditions[condition] = _Condition(self)
        return conditions

    def protocols(self):
        return {c: p.all() for c, p in self._build_conditions().items()}

    def result_paths(self):
        """The key paths of the numbers results.json's sections will hold
        (`Protocol.result_keys`), without loading any data."""
        conditions = self._build_conditions()
        named = list(conditions) != [""]  # as `finish` nests them
        paths = []
        for condition, protocols in conditions.items():
            prefix = f"conditions.{condition}." if named else ""
            sections = [
                ("pretrain", protocols.pretraining),
                *((f"transfer.{n}", p) for n, p in protocols.transfers.items()),
                *((f"analyses.{n}", p) for n, p in protocols.analyses.items()),
            ]
            for section, protocol in sections:
                paths += protocol_base.result_paths(prefix + section, protocol)
        return paths

    def check(self, conditions, data):
        """The checks that need the data, before any training starts."""
        # A model that cannot be built (e.g. WIDTH = 0) fails here, outside
        # the strategy scope; the run builds its own from the seed later.
        protocol_base.build_model(
            self.model_fn, self._head(data.train), data.train.images.shape[1:]
        )
        for protocols in conditions.values():
            for protocol in protocols.all():
                protocol.check(data)

    def run(self):
        conditions = self._build_conditions()  # settings first, then data
        sets = data_lib.load_class_sets(data_dir=self.data_dir, seed=self.seed)
        train, val = data_lib.split_per_class(
            sets.pretrain, self.train_per_class, seed=self.seed
        )
        data = protocol_base.Data(train=train, val=val, transfer=sets.transfer)
        self.check(conditions, data)
        self.start(
            f"pretraining: {train.num_classes} classes ({len(train.labels)} "
            f"train / {len(val.labels)} val images); transfer pool: "
            f"{sets.transfer.num_classes} classes"
        )
        results = {}
        for condition, protocols in conditions.items():
            with gin.config_scope(condition or None):
                results[condition] = self._run_condition(
                    condition, protocols, data
                )
            self.save_config()
        summary = self.finish(results)
        self._report(conditions, results)
        return summary

    def _head(self, train):
        outputs = self.head_outputs or train.num_classes
        if outputs < train.num_classes:
            raise UsageError(
                f"TransferRunner.head_outputs = {outputs} is smaller than "
                f"the {train.num_classes} pretraining classes; raise it or "
                "leave it unset."
            )
        return outputs

    def _run_condition(self, condition, protocols, data):
        context = self.context(condition)
        model = self.build_model(
            self.model_fn, self._head(data.train), data.train.images.shape[1:]
        )
        result = {"pretrain": protocols.pretraining(model, data, context)}
        pretrained = [v.numpy() for v in model.weights]

        def from_pretrained(protocol):
            for variable, value in zip(model.weights, pretrained):
                variable.assign(value)
            return protocol(model, data, context)

        result["transfer"] = {
            name: from_pretrained(p) for name, p in protocols.transfers.items()
        }
        if protocols.analyses:
            result["analyses"] = {
                name: from_pretrained(p)
                for name, p in protocols.analyses.items()
            }
        headline = {
            "pretrain/validation_accuracy": result["pretrain"].get(
                "val_accuracy"
            )
        }
        for name, transfer in result["transfer"].items():
            headline[f"transfer/{name}/test_accuracy"] = transfer.get(
                "test_accuracy"
            )
        self.summarize(context.writer, headline, condition)
        context.writer.close()
        return result

    def _report(self, conditions, results):
        """The comparison table and each protocol's figures over the
        conditions (plots/<name>.png and TensorBoard plots/<name>)."""
        rows, header = [], ["condition"]
        for condition, protocols in conditions.items():
            result = results[condition]
            cells = dict(protocols.pretraining.columns(result["pretrain"]))
            for name, protocol in protocols.transfers.items():
                for column, text in protocol.columns(
                    result["transfer"][name]
                ).items():
                    cells[f"{name} {column}"] = text
            header += [c for c in cells if c not in header]
            rows.append([condition or self.experiment, *cells.values()])
        console.say("\npretraining → transfer\n" + console.table(header, rows))
        figures = {}
        for name in self.transfers:
            runs = {
                c or self.experiment: p.transfers[name]
                for c, p in conditions.items()
            }
            figures.update(next(iter(runs.values())).figures(runs))
        if not figures:
            return
        writer = tensorboard.Writer(
            os.path.join(self.output_dir, "tensorboard")
        )
        for name, png in figures.items():
            path = os.path.join(self.output_dir, "plots", f"{name}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(png)
            writer.image(f"plots/{name}", png)
        writer.close()
