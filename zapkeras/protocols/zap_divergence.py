"""Zap-divergence (frati2025 §2.2, Fig. 2-3, 8).

Two copies of the pretrained model: a control, and a treatment whose
classifier is resampled once (a zap). Both are trained on the same i.i.d.
batches with the same optimizer settings, and after every update the cosine
similarity A·B/(‖A‖‖B‖) between each layer's entire weight vector in the two
copies is recorded: an array [layers, steps] per learning rate. Whether the
copies drift apart or realign after the shock is the measurement.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

import gin
from zapkeras import data as data_lib
from zapkeras import settings
from zapkeras.methods import zapping
from zapkeras.outputs import plots
from zapkeras.protocols import base as protocol_base


def _copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _layer_vector(layer):
    return ops.concatenate(
        [ops.reshape(w, [-1]) for w in layer.trainable_weights]
    )


def _cosine(a, b):
    return ops.sum(a * b) / (ops.norm(a) * ops.norm(b))


def divergence(
    model, batches, steps, learning_rate, optimizer, *, perturb, seed
):
    """Cosine similarity [layers, steps] of control vs zapped copies.

    `batches` yields (x, y); `perturb=False` skips the zap (a sanity check:
    identical copies on identical batches stay at similarity 1).
    Returns (layer names, similarities).
    """
    control, treatment = _copy(model), _copy(model)
    if perturb:
        zapping.zap(treatment.get_layer("classifier"), seed=seed)
    pairs = [
        (a, b)
        for a, b in zip(control.layers, treatment.layers)
        if a.trainable_weights
    ]
    optimizers = [optimizer(learning_rate=learning_rate) for _ in range(2)]

    @tf.function
    def step(x, y):
        for net, opt in zip((control, treatment), optimizers):
            with tf.GradientTape() as tape:
                loss = ops.mean(
                    keras.losses.sparse_categorical_crossentropy(
                        y, net(x, training=True), from_logits=True
                    )
                )
            variables = net.trainable_variables
            opt.apply(tape.gradient(loss, variables), variables)
        return ops.stack(
            [_cosine(_layer_vector(a), _layer_vector(b)) for a, b in pairs]
        )

    sims = [step(x, y).numpy() for x, y in batches.take(steps)]
    return [a.name for a, _ in pairs], np.stack(sims, axis=1)


@gin.configurable("zap_divergence")
@settings.declared("zap_divergence")
class ZapDivergence(protocol_base.Protocol):
    """Runs `divergence` for each learning rate on the pretraining data
    (an analysis of the pretrained model; gin: `zap_divergence`).

    Saves curves/<condition>/zap_divergence.npz ([layers, steps] per rate),
    a Fig. 2b-style plot per rate, and TensorBoard scalars
    zap_divergence/lr_<rate>/<layer> on the step axis.
    """

    def __init__(
        self,
        *,
        learning_rates: settings.LearningRates = (1e-3,),
        steps: settings.PositiveInt = 100,
        batch_size: settings.PositiveInt = 256,
        optimizer=keras.optimizers.Adam,
    ):
        self.learning_rates = learning_rates
        self.steps, self.batch_size = steps, batch_size
        self.optimizer = optimizer

    def result_keys(self):
        return [
            *(f"final_similarity.{lr:g}.<layer>" for lr in self.learning_rates),
            "steps",
        ]

    def __call__(self, model, data, context):
        arrays, final = {}, {}
        for lr in self.learning_rates:
            batches = data_lib.iid_batches(
                data.train, self.batch_size, context.seed
            )
            names, sims = divergence(
                model,
                batches,
                self.steps,
                lr,
                self.optimizer,
                perturb=True,
                seed=context.seed,
            )
            key = f"lr_{lr:g}"
            arrays[key] = sims
            final[f"{lr:g}"] = {n: float(s[-1]) for n, s in zip(names, sims)}
            for t in range(sims.shape[1]):
                context.writer.scalars(
                    f"zap_divergence/{key}", dict(zip(names, sims[:, t])), t + 1
                )
            png = plots.layer_similarity(
                names, sims, f"zap-divergence, lr {lr:g}"
            )
            path = context.curves_path(f"zap_divergence_{key}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(png)
            context.writer.image(f"zap_divergence/{key}", png)
        np.savez(
            context.curves_path("zap_divergence.npz"),
            layers=np.array(names),
            **arrays,
        )
        return {"layers": names, "final_similarity": final, "steps": self.steps}
