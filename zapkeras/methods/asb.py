"""ASB and Meta-ASB pre-training (frati2024 §2.1.1, Alg. 1).

One `train_step` is one episode of Alg. 1: zap the classifier column of the
episode's class (lines 6–8), K single-example plain-SGD steps on that class
(lines 10–13), then one outer-optimizer step on the meta batch = the K inner
examples + R "remember" examples, with the loss at the adapted weights θ_K:

- ASB (line 17): the model keeps θ_K and the outer step follows the
  gradient at θ_K (docs/reference_codes.md §1.2);
- Meta-ASB (line 15): the outer step follows the gradient w.r.t. the
  pre-episode weights θ_0 through all K inner steps and updates θ_0; the
  inner updates are discarded (docs/reference_codes.md §1.3).

The inner loop is functional (`model.stateless_call` on weight tensors), so
the meta-gradient is exact to second order (docs/keras_notes.md §6).
Measured on the Omniglot convnet (width 256, K = 20, 2-core CPU): ASB runs
it as a `tf.while_loop`, which traced in ~3 s instead of ~11 s unrolled and
ran at least as fast (1.09 vs 1.20 s per episode). Meta-ASB unrolls it
(~1.7 s per episode after a ~30 s trace): back-propagating through a while
loop of inner tapes raised AlreadyExistsError on a leaked TemporaryVariable
from the second call on (TF 2.21; tensorflow/tensorflow#25540).

Under MirroredStrategy every replica runs the same episode (see
`episode_batches`) and the same inner loop, so the shared weights stay
equal; the outer loss is split: each replica takes its share of the meta
batch and scales its loss sum by 1 / (K + R), so the gradients that
`apply_gradients` sums over replicas are the full-batch mean gradient.
"""

import keras
import tensorflow as tf
from keras import ops

from zapkeras import compat
from zapkeras import compile_options
from zapkeras import losses
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.methods import asb_saving
from zapkeras.methods import hooks
from zapkeras.methods.zapping import zap as zap_units
from zapkeras.models import layers

EPISODE_KEYS = ("inner_x", "inner_y", "remember_x", "remember_y")
_NUM_REPLICAS = settings.PositiveInt(
    example="strategy.num_replicas_in_sync (1 without a strategy)"
)
_INNER_LEARNING_RATE = settings.NonNegativeNumber(
    example="0.1 (Omniglot reference)"
)
_ZAP_SEED = settings.Seed(none_means="a random zap stream")


@settings.declared("episode_batches")
def episode_batches(episodes, num_replicas: _NUM_REPLICAS):
    """Global batches of `num_replicas` copies of each episode.

    Keras splits a global batch over the replicas, so each replica gets the
    same episode with a leading axis of 1, which `train_step` drops. Use
    `strategy.num_replicas_in_sync` (1 without a strategy).
    """

    def copies(episode):
        return tf.nest.map_structure(
            lambda t: tf.repeat(t[None], num_replicas, axis=0), episode
        )

    return episodes.map(copies)


def _inner_index(model, inner_variables):
    """Indices into `model.trainable_variables` of the inner-loop weights."""
    trainable = model.trainable_variables
    if inner_variables is None:
        return tuple(range(len(trainable)))
    if callable(inner_variables):
        chosen = [i for i, v in enumerate(trainable) if inner_variables(v)]
    else:
        if isinstance(inner_variables, str):
            inner_variables = [inner_variables]
        wanted = {v if isinstance(v, str) else id(v) for v in inner_variables}
        keys = [
            (id(v), v.path, asb_saving.relative_path(model, v))
            for v in trainable
        ]
        chosen = [i for i, k in enumerate(keys) if wanted.intersection(k)]
        unknown = wanted.difference(*zip(*keys)) if keys else wanted
        if unknown:
            named = sorted(w for w in unknown if isinstance(w, str))
            named = f" (unknown: {named})" if named else ""
            raise UsageError(
                "inner_variables lists variables that are not trainable "
                f"variables of model {model.name!r}{named}; list "
                "entries of model.trainable_variables or their paths "
                "(variable.path), or pass a predicate."
            )
    if not chosen:
        raise UsageError(
            "inner_variables selects no trainable variable of model "
            f"{model.name!r}; pass None (all) or a predicate/list that "
            "matches some of model.trainable_variables."
        )
    return tuple(chosen)


@keras.saving.register_keras_serializable(package="zapkeras")
@settings.declared
class ASB(
    hooks.Trainer, asb_saving.Saving, compat.LocalBatchBuild, keras.Model
):
    """Alternating Sequential and Batch learning (frati2024 Alg. 1, line 17).

    Wraps a built classifier `model` whose logits layer is named
    "classifier". Build it, and this wrapper, under the strategy's scope;
    compile with the outer optimizer only (e.g. Adam(1e-3), the
    reference); fit on `episode_batches(asb_episodes(...), n_replicas)`.
    Metrics: `inner_loss` (mean over the K inner steps), `outer_loss` and
    `outer_accuracy` (meta batch at θ_K, before the outer step).
    `evaluate` and `predict` take ordinary (x, y) data and use the
    classifier; `save` / `keras.models.load_model` round-trip the wrapper
    (classifier, outer optimizer, settings, zap seed state).

    Args:
      model: the classifier; the wrapper trains its variables in place.
      inner_learning_rate: plain-SGD rate of the K inner steps (reference:
        0.1 Omniglot, 1e-3 Mini-ImageNet / Omni-image; docs/reference_codes.md
        §1.2).
      zap: resample the episode class's classifier column before the inner
        loop, Kaiming-normal std √(2/fan_in) (default True; the paper's
        best setting; False is the no-zap control).
      zap_reset_bias: also set that class's bias to 0 (default True, paper
        footnote 4; False keeps it, as the reference code does,
        docs/reference_codes.md §1.12).
      zap_reset_optimizer: also zero the outer optimizer's slots of the
        zapped entries (default False: the reference keeps Adam's moments).
      inner_variables: the weights the inner loop adapts: None (default,
        all, as the paper), a list of trainable variables or of their
        paths, or a predicate on a variable (ANML/OML-style variants; a
        predicate cannot be saved); the rest stay at θ_0.
      seed: int seed of the zap draws (a SeedGenerator the wrapper owns).

    Non-trainable state (e.g. normalisation statistics) is carried through
    the inner loop and written back after it, for ASB and Meta-ASB alike.
    """

    _meta = False
    first_order = True  # ASB never differentiates through the inner loop.

    def __init__(
        self,
        model,
        inner_learning_rate: _INNER_LEARNING_RATE,
        zap: settings.Bool = True,
        *,
        zap_reset_bias: settings.Bool = True,
        zap_reset_optimizer: settings.Bool = False,
        inner_variables=None,
        seed: _ZAP_SEED = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not model.built:
            raise UsageError(
                f"model {model.name!r} is not built; build it (call it on a "
                "batch, or give it an Input) before wrapping it."
            )
        if zap and "classifier" not in [layer.name for layer in model.layers]:
            raise UsageError(
                f"zap=True but model {model.name!r} has no layer named "
                "'classifier'; name its output Dense 'classifier'."
            )
        self.model = model
        self.inner_learning_rate = inner_learning_rate
        self.zap = zap
        self.zap_reset_bias = zap_reset_bias
        self.zap_reset_optimizer = zap_reset_optimizer
        self._inner_index = _inner_index(model, inner_variables)
        self._inner_saveable = not callable(inner_variables)
        self._inner_all = inner_variables is None
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)
        self._trackers = [
            keras.metrics.Mean(name)
            for name in ("inner_loss", "outer_loss", "outer_accuracy")
        ]
        self._eval_trackers = [
            keras.metrics.Mean(n) for n in ("loss", "accuracy")
        ]
        self.built = True

    @property
    def method_target(self):
        """Methods observe and reset the wrapped classifier."""
        return self.model

    @property
    def metrics(self):
        return self._trackers + self._eval_trackers

    def compile(
        self,
        optimizer="adam",
        loss=None,
        metrics=None,
        jit_compile="auto",
        **kwargs,
    ):
        """Compiles with the outer optimizer. `jit_compile` 'auto' is
        `zapkeras.compile_options.jit_compile`'s: XLA off on CPUs, where it
        made ASB 1.1× and Meta-ASB ~30× slower (docs/keras_notes.md §10).
        A float16 classifier is refused: the inner loop is not loss-scaled.
        """
        name = type(self).__name__
        if loss is not None or metrics is not None:
            raise UsageError(
                f"{name}.compile(loss=..., metrics=...): the "
                "episode losses are fixed (cross-entropy from logits) and "
                "the metrics built in; pass only the outer optimizer."
            )
        layers = compat.flatten_layers(self.model)
        if any(layer.compute_dtype == "float16" for layer in layers):
            raise UsageError(
                f"{name}: model {self.model.name!r} has layers computing in "
                "float16 (dtype policy 'mixed_float16'); "
                + compile_options.UNSCALED_HINT
            )
        jit = compile_options.jit_compile(
            jit_compile, self.distribute_strategy, f"{name}.jit_compile"
        )
        super().compile(optimizer=optimizer, jit_compile=jit, **kwargs)

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def test_step(self, data):
        """Classifier CE (from logits) and accuracy on (x, y[, weight]).

        Means over all examples, Σ w·ℓ / Σ w with sample weights (as
        keras.metrics, not a compiled loss's Σ w·ℓ / N), from sums
        all-reduced over the replicas: uneven shares count as on one device.
        """
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise UsageError(
                f"{type(self).__name__}.evaluate evaluates the classifier: "
                "pass labelled data (x, y), e.g. batches of (images, "
                "labels), not episodes."
            )
        logits = self(x, training=False)
        per_example = ops.cast(
            losses.per_example_cross_entropy(y, logits), "float32"
        )
        hits = keras.metrics.sparse_categorical_accuracy(y, logits)
        w = ops.ones_like(per_example) if weight is None else weight
        w = ops.reshape(ops.cast(w, "float32"), ops.shape(per_example))
        sums = [
            ops.sum(w * per_example),
            ops.sum(w * ops.cast(hits, "float32")),
        ]
        *sums, count = tf.distribute.get_replica_context().all_reduce(
            "SUM", sums + [ops.sum(w)]
        )
        for tracker, total in zip(self._eval_trackers, sums):
            tracker.update_state(ops.divide_no_nan(total, count), count)
        return {t.name: t.result() for t in self._eval_trackers}

    def train_step(self, data):
        """One episode of Alg. 1 on this replica's copy of the episode."""
        episode = keras.utils.unpack_x_y_sample_weight(data)[0]
        if not isinstance(episode, dict) or set(episode) != set(EPISODE_KEYS):
            raise UsageError(
                "fit ASB/MetaASB on episode dicts with keys "
                f"{EPISODE_KEYS} (zapkeras.data.asb_episodes)."
            )
        copies = episode["inner_y"].shape
        if copies.rank != 2 or copies[0] != 1:
            raise UsageError(
                f"episode inner_y has shape {copies}; feed "
                "episode_batches(episodes, strategy.num_replicas_in_sync) "
                "so that each replica gets one episode."
            )
        logs = self._episode(**{k: v[0] for k, v in episode.items()})
        for tracker, value in zip(self._trackers, logs):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self._trackers}

    def _zap(self, classes):
        """Alg. 1 lines 6–8, once for all replicas (merge_call inside)."""
        zap_units(
            self.model.get_layer("classifier"),
            classes,
            optimizer=self.optimizer if self.zap_reset_optimizer else None,
            reset_bias=self.zap_reset_bias,
            seed=self._seed_generator,
        )

    def _episode(self, inner_x, inner_y, remember_x, remember_y):
        """Zap, adapt, outer step; returns the three metric values."""
        if self.zap:
            self._zap(tf.unique(inner_y).y)
        trainable = self.model.trainable_variables
        state = self.model.non_trainable_variables
        theta0 = [tf.convert_to_tensor(v) for v in trainable]
        state0 = [tf.convert_to_tensor(v) for v in state]
        meta_x = tf.concat([inner_x, remember_x], axis=0)
        meta_y = tf.concat([inner_y, remember_y], axis=0)
        total = tf.shape(meta_y)[0]
        x, y = self._replica_share(total, meta_x, meta_y)
        with tf.GradientTape() as tape:
            tape.watch(theta0)
            if self._meta:
                theta, state_k, inner_loss = self._adapt(
                    theta0, state0, inner_x, inner_y
                )
            else:
                with tape.stop_recording():
                    theta, state_k, inner_loss = self._adapt(
                        theta0, state0, inner_x, inner_y
                    )
                tape.watch(theta)
            logits, taps, _ = hooks.stateless_forward(self, theta, state_k, x)
            per_example = losses.per_example_cross_entropy(y, logits)
            share = ops.sum(per_example) / ops.cast(total, per_example.dtype)
            scaled = self.optimizer.scale_loss(share)
        grads = tape.gradient(scaled, theta0 if self._meta else theta)
        if self._meta:
            hooks.assign_all(state, state_k)
        else:
            inner = [trainable[i] for i in self._inner_index]
            fast = [theta[i] for i in self._inner_index]
            hooks.assign_all(inner + state, fast + state_k)
        self.optimizer.apply_gradients(zip(grads, trainable))
        reduced = None
        if hooks.gradients_needed(self):
            reduced = hooks.global_gradients(self.optimizer, grads)
        hooks.notify(self, hooks.StepData(x, y, None, trainable, reduced, taps))
        hits = ops.equal(ops.cast(ops.argmax(logits, -1), y.dtype), y)
        correct = ops.sum(ops.cast(hits, "float32"))
        outer_loss, accuracy = tf.distribute.get_replica_context().all_reduce(
            "SUM",
            [ops.cast(share, "float32"), correct / ops.cast(total, "float32")],
        )
        return inner_loss, outer_loss, accuracy

    def _replica_share(self, total, *tensors):
        """This replica's contiguous slice of the meta batch."""
        context = tf.distribute.get_replica_context()
        size = -(-total // context.num_replicas_in_sync)
        start = context.replica_id_in_sync_group * size
        return [t[start : start + size] for t in tensors]

    def _adapt(self, theta, state, xs, ys):
        """K single-example SGD steps (Alg. 1 lines 10–13) as tensors.

        Returns θ_K, the non-trainable state after the loop and the mean
        inner loss. Inner gradients are kept in the graph only for
        second-order Meta-ASB.
        """
        second_order = self._meta and not self.first_order
        steps = tf.shape(ys)[0]

        def step(i, fast, state, loss_sum):
            with tf.GradientTape() as tape:
                tape.watch(fast)
                logits, state = self.model.stateless_call(
                    self._with_fast(theta, fast),
                    state,
                    xs[i][None],
                    training=True,
                )
                loss = ops.mean(
                    losses.per_example_cross_entropy(ys[i][None], logits)
                )
            grads = tape.gradient(
                loss, fast, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            if not second_order:
                grads = [tf.stop_gradient(g) for g in grads]
            fast = [
                p - ops.cast(self.inner_learning_rate, p.dtype) * g
                for p, g in zip(fast, grads)
            ]
            return i + 1, fast, state, loss_sum + ops.cast(loss, "float32")

        carry = (0, [theta[i] for i in self._inner_index], state, 0.0)
        if not self._meta:
            carry = tf.while_loop(lambda i, *_: i < steps, step, carry)
        elif ys.shape[0] is None:
            raise UsageError(
                "MetaASB unrolls its inner loop, so the episodes need a "
                "fixed number of inner steps K (static inner_y shape); use "
                "zapkeras.data.asb_episodes or fixed-size episodes."
            )
        else:
            for _ in range(ys.shape[0]):
                carry = step(*carry)
        _, fast, state, loss_sum = carry
        theta = self._with_fast(theta, fast)
        return theta, state, loss_sum / ops.cast(steps, "float32")

    def _with_fast(self, theta, fast):
        """θ with the inner-loop weights replaced by `fast`."""
        theta = list(theta)
        for index, value in zip(self._inner_index, fast):
            theta[index] = value
        return theta


@keras.saving.register_keras_serializable(package="zapkeras")
@settings.declared
class MetaASB(ASB):
    """Meta-ASB (frati2024 Alg. 1, line 15; docs/reference_codes.md §1.3).

    As `ASB`, but the outer optimizer updates the pre-episode weights θ_0
    with the gradient of the meta-batch loss at θ_K taken w.r.t. θ_0
    through all K inner steps (nested tapes; full second order, as the
    reference's `higher` loop); the inner updates are then discarded.

    Args:
      first_order: drop the second-order terms (FOMAML: inner gradients
        stop-gradient'ed, so the update is the gradient at θ_K applied to
        θ_0). Default False, as the paper and reference code.
      Others: as `ASB`.
    """

    _meta = True

    def __init__(
        self,
        model,
        inner_learning_rate,
        zap=True,
        *,
        first_order: settings.Bool = False,
        **kwargs,
    ):
        super().__init__(model, inner_learning_rate, zap, **kwargs)
        self.first_order = first_order
        inexact = [
            layer.name
            for layer in compat.flatten_layers(model)
            if layers.first_order_only(layer)
        ]
        if inexact and not first_order:
            raise UsageError(
                f"MetaASB: model {model.name!r} has Keras normalisation "
                f"layers {inexact} whose gradients are right to first order "
                "only, so the second-order meta-gradient through them would "
                "be wrong; use zapkeras.models.InstanceNorm or "
                "zapkeras.models.layers.batch_norm (exact), or pass "
                "first_order=True (FOMAML; asb_pretraining.first_order = "
                "True in gin)."
            )

    def get_config(self):
        return {**super().get_config(), "first_order": self.first_order}
