"""The experiment runner: data → model → pretraining → transfer → outputs.

One run pretrains a model and transfers it with each configured protocol.
`conditions` (gin scope names) repeat that for several pretraining conditions
on the same data and from the same initial weights, e.g. `('iid',
'iid_zap')` with `iid_zap/iid_pretraining.zapping = @Zapping()`, and print a
comparison table. Output layout (README "Outputs"): config.gin, results.json,
tensorboard/[condition/], checkpoints/[condition/], curves/[condition/],
plots/.
"""

import dataclasses
import os

import keras
import tensorflow as tf

import gin
import zapkeras
from zapkeras import data as data_lib
from zapkeras.data import continual as continual_data
from zapkeras.errors import UsageError
from zapkeras.outputs import console
from zapkeras.outputs import files
from zapkeras.outputs import plots
from zapkeras.outputs import tensorboard
from zapkeras.protocols import continual as continual_protocol
from zapkeras.protocols.pretrain import iid_pretraining
from zapkeras.protocols.transfer import sequential_transfer


@dataclasses.dataclass
class RunContext:
    """What a protocol needs to know about the run it is part of."""

    seed: int
    strategy: tf.distribute.Strategy
    output_dir: str
    condition: str
    writer: tensorboard.Writer = None
    dry_run: bool = False  # protocols validate their settings and return

    @property
    def label(self):
        return self.condition or "run"

    def curves_path(self, name):
        """Where this condition's curve or array file `name` goes."""
        return os.path.join(self.output_dir, "curves", self.condition, name)

    def checkpoint_dir(self, phase):
        return os.path.join(
            self.output_dir, "checkpoints", self.condition, phase
        )


def _make_output_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UsageError(
            f"--output_dir={path!r} cannot be written ({e.strerror}); choose "
            "a directory you can write to."
        ) from None


@gin.configurable(
    denylist=["output_dir", "data_dir", "seed", "strategy", "experiment"]
)
class Runner:
    """Runs one experiment end to end.

    Args:
      output_dir, data_dir, seed, strategy, experiment: from the command line.
      model_fn: a model factory, called as model_fn(num_classes=, channels=).
      head_outputs: classifier size; None = number of pretraining classes
        (frati2024's Omniglot head has 1000 outputs for 964 classes).
      train_per_class: pretraining images per class; the rest validate.
      pretraining: the pretraining protocol (e.g. `iid_pretraining`).
      transfers: {name: protocol} run after pretraining, e.g.
        {'sequential': @sequential_transfer}.
      analyses: {name: protocol} measurements of the pretrained model on
        its pretraining data, e.g. {'zap_divergence': @zap_divergence}.
      conditions: gin scope names of pretraining conditions to compare, or
        None for a single run.
      continual: a continual protocol (e.g. `continual_learning`); when
        set it replaces pretraining and transfer: the run trains
        `model_fn`'s network on a continual problem over
        `continual_dataset` and writes results["continual"].
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
        head_outputs=None,
        train_per_class=15,
        pretraining=iid_pretraining,
        transfers=None,
        analyses=None,
        conditions=None,
        continual=None,
    ):
        self.output_dir = output_dir
        self.data_dir = data_dir
        self.seed = seed
        self.strategy = strategy
        self.experiment = experiment
        self.model_fn = model_fn
        self.head_outputs = head_outputs
        self.train_per_class = train_per_class
        self.pretraining = pretraining
        self.transfers = transfers or {"sequential": sequential_transfer}
        self.analyses = analyses or {}
        self.conditions = tuple(conditions or ("",))
        self.continual = continual

    def run(self):
        if self.continual is not None:
            return self._run_continual()
        sets = data_lib.load_class_sets(data_dir=self.data_dir, seed=self.seed)
        train, val = data_lib.split_per_class(
            sets.pretrain, self.train_per_class, seed=self.seed
        )
        for condition in self.conditions:
            with gin.config_scope(condition or None):
                self._preflight(condition, train, val, sets.transfer)
        _make_output_dir(self.output_dir)
        console.say(
            f"zapkeras {zapkeras.__version__}: {self.experiment} → "
            f"{self.output_dir}\n  pretraining: {sets.pretrain.num_classes} "
            f"classes ({len(train.labels)} train / {len(val.labels)} val "
            f"images); transfer pool: {sets.transfer.num_classes} classes; "
            f"{self.strategy.num_replicas_in_sync} replica(s)"
        )
        results = {}
        for condition in self.conditions:
            with gin.config_scope(condition or None):
                results[condition] = self._run_condition(
                    condition, train, val, sets.transfer
                )
            self._save_config()
        summary = self._summary(results)
        files.write_json(os.path.join(self.output_dir, "results.json"), summary)
        self._report(results)
        return summary

    def _preflight(self, condition, train, val, pool):
        """Every protocol checks its settings before any training starts,
        so a bad value late in the run cannot waste the hours before it."""
        context = RunContext(
            seed=self.seed,
            strategy=self.strategy,
            output_dir=self.output_dir,
            condition=condition,
            dry_run=True,
        )
        # A model that cannot be built (e.g. WIDTH = 0) fails here, outside
        # the strategy scope; the run builds its own from the seed later.
        self.model_fn(
            num_classes=self._check_head(train),
            channels=train.images.shape[-1],
        )
        self.pretraining(None, train, val, context)
        for protocol in self.transfers.values():
            protocol(None, pool, context)
        for protocol in self.analyses.values():
            protocol(None, train, context)

    def _check_head(self, train):
        outputs = self.head_outputs or train.num_classes
        if outputs < train.num_classes:
            raise UsageError(
                f"Runner.head_outputs = {outputs} is smaller than the "
                f"{train.num_classes} pretraining classes; raise it or "
                "leave it unset."
            )
        return outputs

    def _run_condition(self, condition, train, val, pool):
        context = RunContext(
            seed=self.seed,
            strategy=self.strategy,
            output_dir=self.output_dir,
            condition=condition,
            writer=tensorboard.Writer(
                os.path.join(self.output_dir, "tensorboard", condition)
            ),
        )
        keras.utils.set_random_seed(self.seed)
        outputs = self._check_head(train)
        with self.strategy.scope():
            model = self.model_fn(
                num_classes=outputs, channels=train.images.shape[-1]
            )
        result = {"pretrain": self.pretraining(model, train, val, context)}
        result["transfer"] = {
            name: protocol(model, pool, context)
            for name, protocol in self.transfers.items()
        }
        if self.analyses:
            result["analyses"] = {
                name: protocol(model, train, context)
                for name, protocol in self.analyses.items()
            }
        context.writer.close()
        return result

    def _run_continual(self):
        train, test = continual_data.continual_dataset(
            data_dir=self.data_dir, seed=self.seed
        )
        preflight = RunContext(
            seed=self.seed,
            strategy=self.strategy,
            output_dir=self.output_dir,
            condition="",
            dry_run=True,
        )
        self.continual(None, None, train, test, preflight)
        continual_protocol.build_model(  # a bad model setting fails here
            self.model_fn, train.num_classes, train.images.shape[1:]
        )
        _make_output_dir(self.output_dir)
        console.say(
            f"zapkeras {zapkeras.__version__}: {self.experiment} → "
            f"{self.output_dir}\n  {train.num_classes} classes "
            f"({len(train.labels)} train / {len(test.labels)} test images); "
            f"{self.strategy.num_replicas_in_sync} replica(s)"
        )
        context = RunContext(
            seed=self.seed,
            strategy=self.strategy,
            output_dir=self.output_dir,
            condition="",
            writer=tensorboard.Writer(
                os.path.join(self.output_dir, "tensorboard")
            ),
        )
        keras.utils.set_random_seed(self.seed)

        def build():
            with self.strategy.scope():
                return continual_protocol.build_model(
                    self.model_fn, train.num_classes, train.images.shape[1:]
                )

        result = self.continual(build(), build, train, test, context)
        context.writer.text("config/operative_gin", gin.operative_config_str())
        context.writer.close()
        self._save_config()
        summary = self._summary({"": {"continual": result}})
        files.write_json(os.path.join(self.output_dir, "results.json"), summary)
        return summary

    def _summary(self, results):
        summary = {
            "experiment": self.experiment,
            "seed": self.seed,
            "zapkeras_version": zapkeras.__version__,
            "replicas": self.strategy.num_replicas_in_sync,
        }
        if list(results) == [""]:
            summary.update(results[""])
        else:
            summary["conditions"] = results
        return summary

    def _save_config(self):
        config = gin.operative_config_str()
        files.write_atomic(os.path.join(self.output_dir, "config.gin"), config)

    def _report(self, results):
        header = ["condition", "pretrain val acc"]
        names = list(self.transfers)
        header += [f"{n} transfer test acc (best lr)" for n in names]
        rows = []
        for condition, result in results.items():
            row = [condition or self.experiment]
            row.append(f"{result['pretrain']['val_accuracy']:.3f}")
            for name in names:
                t = result["transfer"][name]
                row.append(
                    f"{t['test_accuracy']:.3f} ± {t['test_accuracy_std']:.3f}"
                    f" ({t['best_lr']:g})"
                )
            rows.append(row)
        text = console.table(header, rows)
        console.say("\npretraining → transfer\n" + text)
        self._plot(results)

    def _plot(self, results):
        if "sequential" not in self.transfers:
            return
        curves = {}
        for condition, result in results.items():
            best = f"{result['transfer']['sequential']['best_lr']:g}"
            path = os.path.join(
                self.output_dir, "curves", condition, "transfer_sequential.json"
            )
            curves[condition or self.experiment] = files.read_json(path)[best]
        png = plots.transfer_curves(curves)
        path = os.path.join(self.output_dir, "plots", "transfer_sequential.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        writer = tensorboard.Writer(
            os.path.join(self.output_dir, "tensorboard")
        )
        writer.image("plots/transfer_sequential", png)
        writer.text("config/operative_gin", gin.operative_config_str())
        writer.close()
