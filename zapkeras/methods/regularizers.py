"""Regularizers of lee2024's baselines (App. A.4): L2, L2 to init, logits.

Plain L2 needs no code. Keras 3 optimizers' `weight_decay=` is decoupled
for every optimizer (SGD, Adam, AdamW, ...): before the gradient update,
p ← p − lr·wd·p = p·(1 − lr·wd) with the current learning rate, not added
to the gradient (keras/src/optimizers/base_optimizer.py
`_apply_weight_decay`; measured with SGD(0.1, weight_decay=0.5), p = 2
and gradient 1 twice: 1.8 then 1.61, or 1.52 with momentum 0.9 where
coupled L2 would give 1.43: the decay stays out of the velocity). That is
the reference's SGDW and PyTorch's AdamW (docs/reference_codes.md
§2.3, §3.2), so:

- hernandez-garcia2025's L2 with factor c and step size α:
  `SGD(α, weight_decay=c / α)` (per step p ← p·(1 − c));
- the H&T repo's L2: `AdamW(1e-3, weight_decay=...)` (Keras' Adam with
  weight_decay is the same decoupled update).

Keras decays every trainable variable unless told otherwise
(`optimizer.exclude_from_weight_decay`), as both references do.
"""

import keras
from keras import ops

from zapkeras import losses
from zapkeras import settings
from zapkeras.methods.shrink_perturb import ShrinkAndPerturb

SPECTRAL_FORMS = ("paper", "reference")
_FORM = settings.OneOf(
    *SPECTRAL_FORMS,
    hint="use 'paper' (λ/2·||z||²) or 'reference' (λ·mean_c z_c², the H&T "
    "repo).",
)


@settings.declared
class RegenerativeL2(ShrinkAndPerturb):
    """L2 toward the initial weights (Kumar et al. 2023; lee2024 baseline).

    After every optimizer step, every trainable weight decays toward its
    initial value θ_0: θ ← θ − lr·λ·(θ − θ_0), lr the optimizer's learning
    rate. This is decoupled decay with centre θ_0 instead of 0, i.e. the
    lee2024 L2 baseline (AdamW) moved to the initialisation; with plain SGD
    it equals adding (λ/2)·||θ − θ_0||² to the loss. Kumar et al. add
    λ·||θ − θ_0||² to the loss, which Adam would rescale per weight; the
    H&T repo adds λ·||θ − θ_0||₂ (unsquared) of two tensors only
    (docs/reference_codes.md §3.2), so neither form is reproduced. With a
    learning-rate schedule, lr is its value after the step (the next
    step's rate).

    Args:
      strength: λ ≥ 0 (lee2024 swept 1, 0.1, 0.01, 1e-3, 1e-4).
      reference_coverage: decay only the tensors the H&T repo's term
        reaches: the last trainable tensor of the body and the last of the
        `head` layers, in the model's variable order (PyTorch's
        registration order there; typically the last norm's or dense
        layer's bias of each). Its loop over the parameters overwrites the
        term at every iteration instead of summing, a bug, so everything
        else goes unregularised. Default False: every trainable weight, the
        method as published.
      head: the head layers' name(s), used with `reference_coverage`
        (H&T's MLP head: ['head_dense', 'classifier']).
      initial_weights: θ_0 as `model.get_weights()`; default the weights
        when the method first sees the model (the start of `fit`).

    Under ASB/MetaASB it decays the classifier after each outer step, at
    the outer optimizer's rate.
    """

    name = "regenerative_l2"
    _lambda_limit = float("inf")

    def __init__(
        self,
        strength: settings.NonNegativeNumber(example=0.01),
        *,
        reference_coverage: settings.Bool = False,
        head="classifier",
        initial_weights=None,
    ):
        self.reference_coverage = reference_coverage
        super().__init__(
            interpolate_to="init",
            lambda_backbone=strength,
            head=head if reference_coverage else (),
            every=(1, "steps"),
            initial_weights=initial_weights,
        )
        self.strength = strength

    def _covered(self, variables, head_ids):
        if not self.reference_coverage:
            return variables
        body = [v for v in variables if id(v) not in head_ids]
        head = [v for v in variables if id(v) in head_ids]
        return [part[-1] for part in (body, head) if part]

    def _lambda_scale(self):
        # Read now, not inside the compiled update: the protocol may give
        # the model a new optimizer for each task.
        return ops.convert_to_tensor(self.optimizer.learning_rate)


@keras.saving.register_keras_serializable(package="zapkeras")
@settings.declared
class SpectralDecoupling(keras.losses.Loss):
    """Sparse cross-entropy from logits + a penalty on the logits.

    Pezeshki et al. (2021), a lee2024 baseline: per example
    CE(y, z) + λ/2·||z||² (form 'paper', the default: the published
    definition); form 'reference' is the H&T repo's λ·mean_c z_c², i.e.
    λ/C·||z||² for C classes, needed to reuse lee2024's tuned λ values.
    Averaged over the batch like any Keras Loss, so under a distribution
    strategy Keras' per-replica scaling applies when used via `compile`.
    """

    def __init__(
        self,
        lam: settings.NonNegativeNumber(example=0.01),
        form: _FORM = "paper",
        name="spectral_decoupling",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.lam = lam
        self.form = form

    def penalty(self, logits):
        """The per-example logit penalty alone (what the continual
        protocol adds to its masked cross-entropy, `logit_penalty`)."""
        squares = ops.square(logits)
        if self.form == "paper":
            return 0.5 * self.lam * ops.sum(squares, axis=-1)
        return self.lam * ops.mean(squares, axis=-1)

    def call(self, y_true, y_pred):
        cross_entropy = losses.per_example_cross_entropy(y_true, y_pred)
        return cross_entropy + self.penalty(y_pred)

    def get_config(self):
        return {**super().get_config(), "lam": self.lam, "form": self.form}
