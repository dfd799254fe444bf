"""i.i.d. pretraining, with or without zapping (frati2024 §3, Alg. 3 setup).

Standard mini-batch training of the whole network on the pretraining classes
(reference: Adam 1e-3, batch 256, 10 epochs on Omniglot). Zapping, when
given, is a `zapkeras.methods.zapping.Zapping` callback: the classifier is
resampled at the start of an epoch, never after the last one.
"""

import time

import keras

import gin
from zapkeras import compile_options
from zapkeras import data as data_lib
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.methods import base
from zapkeras.outputs import checkpoints
from zapkeras.outputs import console
from zapkeras.outputs import tensorboard
from zapkeras.protocols import base as protocol_base


class EpochProgress(keras.callbacks.Callback):
    """Says one line per epoch (its metrics, validation and wall time); on
    a terminal also a bar over the epoch's steps (`unit`: "step", or
    "episode" for ASB), updated every 1% of them and replaced by the line.
    """

    def __init__(self, label, epochs, unit="step"):
        super().__init__()
        self._label, self._epochs, self._unit = label, epochs, unit
        self._start = self._bar = None
        self._every = 1

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        steps = self.params.get("steps")
        self._every = max(1, (steps or 0) // 100)
        self._bar = console.Progress(
            f"{self._label} epoch {epoch + 1}/{self._epochs}", steps, self._unit
        )

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0 or (batch + 1) % self._every == 0:
            self._bar.advance(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._bar.close(clear=True)
        seconds = time.perf_counter() - self._start
        metrics = console.metrics_text(dict(sorted((logs or {}).items())))
        console.say(
            f"{self._label} epoch {epoch + 1}/{self._epochs}  {metrics}  "
            f"({seconds:.1f}s)"
        )


def _columns(result):
    return {"pretrain val acc": f"{result['val_accuracy']:.3f}"}


def _counter_keys(callbacks):
    """'counters.<method>/<counter>' of the methods among `callbacks`."""
    return [
        f"counters.{method.name}/{counter}"
        for method in base.methods_in(callbacks)
        for counter in method.counter_names
    ]


@gin.configurable("iid_pretraining")
@settings.declared("iid_pretraining")
class IidPretraining(protocol_base.Protocol):
    """Trains the model on i.i.d. batches of `data.train` (gin:
    `iid_pretraining`).

    Args:
      epochs, batch_size, learning_rate: the usual; `batch_size` is global.
      optimizer: the optimizer class (reference: Adam).
      zapping: a `Zapping` method, or None for the no-zap control.
      callbacks: further methods (e.g. [@SelectiveWeightReinit()]) or
        Keras callbacks, run in the same fit (`zapkeras.methods.base`).
      log_every_n_steps: TensorBoard cadence for batch metrics.
      jit_compile, precision: XLA and the dtype policy of the run
        (`zapkeras.compile_options`).
    """

    def __init__(
        self,
        *,
        epochs: settings.PositiveInt = 10,
        batch_size: settings.PositiveInt = 256,
        learning_rate: settings.PositiveNumber = 1e-3,
        optimizer=keras.optimizers.Adam,
        zapping=None,
        callbacks=(),
        log_every_n_steps: settings.PositiveInt = 10,
        jit_compile: compile_options.JitCompile = "auto",
        precision: compile_options.Precision = "float32",
    ):
        self.epochs, self.batch_size = epochs, batch_size
        self.jit_compile, self.precision = jit_compile, precision
        self.learning_rate = learning_rate
        self.log_every_n_steps = log_every_n_steps
        self.optimizer = optimizer
        self.zapping, self.callbacks = zapping, tuple(callbacks)

    def columns(self, result):
        return _columns(result)

    def result_keys(self):
        callbacks = [self.zapping] if self.zapping is not None else []
        return [
            "epochs",
            "val_accuracy",
            "val_loss",
            "train_accuracy",
            *_counter_keys(callbacks + list(self.callbacks)),
            "wall_seconds",
        ]

    def __call__(self, model, data, context):
        """Pretrains `model` (built under the strategy's scope) on
        data.train, validating on data.val; returns the results dict."""
        with compile_options.precision(self.precision, model):
            return self._pretrain(model, data, context)

    def _pretrain(self, model, data, context):
        train, val, batch_size = data.train, data.val, self.batch_size
        epochs, zapping = self.epochs, self.zapping
        with context.strategy.scope():
            model.compile(
                optimizer=self.optimizer(learning_rate=self.learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
                metrics=[keras.metrics.SparseCategoricalAccuracy("accuracy")],
                jit_compile=compile_options.jit_compile(
                    self.jit_compile, context.strategy
                ),
            )
            model.optimizer.build(model.trainable_variables)
        callbacks = ([zapping] if zapping is not None else []) + list(
            self.callbacks
        )
        methods = _prepare_methods(callbacks, model, context)
        checkpoint = checkpoints.EpochCheckpoint(
            context.checkpoint_dir("pretrain"), model, methods=methods
        )
        start_epoch = checkpoint.restore()
        steps = data_lib.steps_per_epoch(len(train.labels), batch_size)
        batches = data_lib.iid_batches(
            train, batch_size, context.seed, start_epoch=start_epoch
        )
        val_batches = data_lib.iid_batches(val, batch_size, context.seed)
        callbacks = callbacks + [
            tensorboard.ScalarLogger(
                context.writer, "pretrain", self.log_every_n_steps
            ),
            EpochProgress(f"pretrain[{context.label}]", epochs),
            checkpoints.StopOnNonFinite(f"pretrain[{context.label}]"),
            checkpoint,
        ]
        started = time.perf_counter()
        if start_epoch < epochs:
            if start_epoch:
                console.say(
                    f"pretrain[{context.label}] resuming at epoch "
                    f"{start_epoch + 1}"
                )
            model.fit(
                batches,
                epochs=epochs,
                initial_epoch=start_epoch,
                steps_per_epoch=steps,
                validation_data=val_batches,
                validation_steps=data_lib.steps_per_epoch(
                    len(val.labels), batch_size
                ),
                callbacks=callbacks,
                shuffle=False,  # the stream is already a seeded permutation
                verbose=0,
            )
        wall_seconds = time.perf_counter() - started
        final_val = _evaluate(model, val, batch_size, context.seed)
        final_train = _evaluate(model, train, batch_size, context.seed)
        return {
            "method": "iid",
            "zap": zapping is not None,
            "epochs": epochs,
            "val_accuracy": final_val["accuracy"],
            "val_loss": final_val["loss"],
            "train_accuracy": final_train["accuracy"],
            "counters": base.counters_of(methods),
            "wall_seconds": wall_seconds,
        }


def _prepare_methods(callbacks, trainer, context):
    """The zapkeras methods among `callbacks`, seeded and with their state
    built on `trainer` (so a checkpoint can restore it)."""
    methods = base.methods_in(callbacks)
    for method in methods:
        method.use_run_seed(context.seed)
        method.set_model(trainer)
    return methods


def _layer_prefixes(prefixes):
    """A predicate on variables whose layer name starts with a prefix."""
    if prefixes is None:
        return None
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    return lambda variable: variable.path.startswith(tuple(prefixes))


def _evaluate(model, images, batch_size, seed):
    """Loss and accuracy of `model` over one pass of `images`."""
    results = model.evaluate(
        data_lib.iid_batches(images, batch_size, seed),
        steps=data_lib.steps_per_epoch(len(images.labels), batch_size),
        verbose=0,
        return_dict=True,
    )
    return {k: float(v) for k, v in results.items()}


@gin.configurable("asb_pretraining")
@settings.declared("asb_pretraining")
class AsbPretraining(protocol_base.Protocol):
    """ASB or Meta-ASB pretraining (frati2024 Alg. 1; docs/reference_codes.md
    §1.2-1.3); gin: `asb_pretraining`.

    One optimizer step per episode: `inner_steps` single-example SGD steps
    at `inner_learning_rate` on one class, then an outer `optimizer` step on
    those examples plus `remember` others (reference Omniglot: K = 20,
    R = 64, inner 0.1, Adam 1e-3; 9000 ASB / 25000 Meta-ASB episodes).
    Episodes are grouped into epochs of `episodes_per_epoch` for logging,
    validation and checkpoints; episode i depends on (seed, i) only.

    Args:
      meta: Meta-ASB (second order through the inner loop) instead of ASB.
      zap: resample the episode class's classifier column first.
      first_order: with `meta`, drop second-order terms (FOMAML).
      inner_layers: layer-name prefixes of the weights the inner loop
        adapts (None: all, the paper); ANML's are ('rln_', 'classifier'),
        OML's ('pln_', 'classifier') (zapkeras.models.meta_learners).
      zap_reset_bias, zap_reset_optimizer: see `zapkeras.methods.asb.ASB`.
      callbacks: methods (e.g. [@SelectiveWeightReinit(), @Zapping()]) or
        Keras callbacks for the episodes' fit; methods act on the wrapped
        classifier with the outer step's data (`zapkeras.methods.hooks`).
      jit_compile, precision: XLA and the dtype policy of the run
        (`zapkeras.compile_options`); 'mixed_float16' is refused, as the
        inner loop is not loss-scaled. With XLA on, the zaps inside the
        episode step draw from XLA's random algorithm: the same seed gives
        another (equally seeded) zap stream.
    """

    def __init__(
        self,
        *,
        meta: settings.Bool = False,
        zap: settings.Bool = True,
        episodes: settings.PositiveInt = 9000,
        episodes_per_epoch: settings.PositiveInt = 500,
        inner_steps: settings.PositiveInt = 20,
        remember: settings.NonNegativeInt = 64,
        inner_learning_rate: settings.NonNegativeNumber = 0.1,
        learning_rate: settings.PositiveNumber = 1e-3,
        optimizer=keras.optimizers.Adam,
        first_order: settings.Bool = False,
        inner_layers=None,
        zap_reset_bias: settings.Bool = True,
        zap_reset_optimizer: settings.Bool = False,
        callbacks=(),
        jit_compile: compile_options.JitCompile = "auto",
        precision: compile_options.UnscaledPrecision = "float32",
    ):
        self.episodes, self.episodes_per_epoch = episodes, episodes_per_epoch
        self.learning_rate = learning_rate
        self.inner_steps, self.remember = inner_steps, remember
        self.inner_learning_rate = inner_learning_rate
        self.meta, self.zap, self.first_order = meta, zap, first_order
        self.optimizer = optimizer
        self.inner_layers = inner_layers
        self.zap_reset_bias = zap_reset_bias
        self.zap_reset_optimizer = zap_reset_optimizer
        self.callbacks = tuple(callbacks)
        self.jit_compile, self.precision = jit_compile, precision

    def check(self, data):
        images = len(data.train.labels)
        if not 0 <= self.remember <= images:
            raise UsageError(
                f"asb_pretraining.remember (R) = {self.remember!r} but there "
                f"are {images} training images to remember from; choose "
                f"0..{images} (reference: 64)."
            )

    def columns(self, result):
        return _columns(result)

    def result_keys(self):
        return [
            "episodes",
            "val_accuracy",
            "train_accuracy",
            *_counter_keys(self.callbacks),
            "wall_seconds",
        ]

    def __call__(self, model, data, context):
        """Pretrains `model` on episodes of data.train; returns the
        results dict (validation accuracy on data.val)."""
        self.check(data)
        with compile_options.precision(self.precision, model):
            return self._pretrain(model, data, context)

    def _pretrain(self, model, data, context):
        from zapkeras.methods import asb  # the heavy graph code, if used

        train, val = data.train, data.val
        meta, zap, first_order = self.meta, self.zap, self.first_order
        episodes_per_epoch = self.episodes_per_epoch
        epochs = -(-self.episodes // episodes_per_epoch)
        jit = compile_options.jit_compile(self.jit_compile, context.strategy)
        with context.strategy.scope():
            wrapper_cls = asb.MetaASB if meta else asb.ASB
            extra = {"first_order": first_order} if meta else {}
            learner = wrapper_cls(
                model,
                self.inner_learning_rate,
                zap,
                zap_reset_bias=self.zap_reset_bias,
                zap_reset_optimizer=self.zap_reset_optimizer,
                inner_variables=_layer_prefixes(self.inner_layers),
                seed=context.seed,
                **extra,
            )
            learner.compile(
                optimizer=self.optimizer(learning_rate=self.learning_rate),
                jit_compile=jit,
            )
            learner.optimizer.build(learner.trainable_variables)
            model.compile(
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
                metrics=[keras.metrics.SparseCategoricalAccuracy("accuracy")],
                jit_compile=jit,
            )
        callbacks = list(self.callbacks)
        methods = _prepare_methods(callbacks, learner, context)
        checkpoint = checkpoints.EpochCheckpoint(
            context.checkpoint_dir("pretrain"), learner, methods=methods
        )
        start_epoch = checkpoint.restore()
        replicas = context.strategy.num_replicas_in_sync
        stream = asb.episode_batches(
            data_lib.asb_episodes(
                train,
                inner_steps=self.inner_steps,
                remember=self.remember,
                seed=context.seed,
                start_episode=start_epoch * episodes_per_epoch,
            ),
            replicas,
        )
        method = "meta_asb" if meta else "asb"
        started = time.perf_counter()
        if start_epoch < epochs:
            learner.fit(
                stream,
                epochs=epochs,
                initial_epoch=start_epoch,
                steps_per_epoch=episodes_per_epoch,
                callbacks=callbacks
                + [
                    tensorboard.ScalarLogger(context.writer, "pretrain", 50),
                    EpochProgress(
                        f"pretrain[{context.label}]", epochs, "episode"
                    ),
                    checkpoints.StopOnNonFinite(f"pretrain[{context.label}]"),
                    checkpoint,
                ],
                shuffle=False,
                verbose=0,
            )
        wall_seconds = time.perf_counter() - started
        batch = 256
        return {
            "method": method,
            "zap": bool(zap),
            "episodes": epochs * episodes_per_epoch,
            "val_accuracy": _evaluate(model, val, batch, context.seed)[
                "accuracy"
            ],
            "train_accuracy": _evaluate(model, train, batch, context.seed)[
                "accuracy"
            ],
            "counters": base.counters_of(methods),
            "wall_seconds": wall_seconds,
        }
