"""PyTorch's Adam as a Keras optimizer, for reference-exact runs.

Keras' Adam and PyTorch's differ in where ε goes (docs/reference_codes.md
§1.13). Keras: θ ← θ − lr·√(1 − β2ᵗ)/(1 − β1ᵗ)·m/(√v + ε), ε = 1e-7, i.e.
ε is added to the uncorrected √v. PyTorch (`torch.optim.Adam`, and the
frati2024 and lee2024 codes): θ ← θ − lr·m̂/(√v̂ + ε) with m̂ = m/(1 − β1ᵗ),
v̂ = v/(1 − β2ᵗ), ε = 1e-8. Early in training, while 1 − β2ᵗ is small, the
two differ most: about 1e-4 per weight per step in ASB pretraining and 1e-3
in a sequential-transfer head, measured against PyTorch. `TorchAdam` is
PyTorch's update on Keras Adam's slots (`momentum`, `velocity`, and
`velocity_hat` with amsgrad), so everything that finds or zeroes Adam's
slots by variable works unchanged; the bias corrections are computed in
float64, as PyTorch computes them in Python floats.

`weight_decay=λ` is Keras' decoupled decay θ ← θ·(1 − lr·λ) before the
step, which is `torch.optim.AdamW(weight_decay=λ)` (the lee2024 code's
optimizer); PyTorch's `Adam(weight_decay=λ)` adds λθ to the gradient
instead, which is not provided.
"""

import numbers

import keras
from keras import ops

from zapkeras import settings
from zapkeras import validate

__all__ = ["TorchAdam"]


def _learning_rate(value, setting, *, example=1e-3):
    """A positive number, or a schedule / callable / tensor as Keras takes."""
    if isinstance(value, numbers.Real) or isinstance(value, (str, bool)):
        return validate.positive_number(value, setting, example=example)
    return value


_LEARNING_RATE = settings.Kind("LearningRate", _learning_rate)
_BETA = settings.Number(low=0, high=1, high_open=True)


@keras.saving.register_keras_serializable(package="zapkeras")
@settings.declared
class TorchAdam(keras.optimizers.Adam):
    """Adam with PyTorch's update: θ ← θ − lr·m̂/(√v̂ + ε) (module doc).

    Args:
      learning_rate: a number or a Keras schedule; default 1e-3.
      beta_1, beta_2: in [0, 1); default 0.9, 0.999 (both libraries).
      epsilon: ε ≥ 0, added to the bias-corrected √v̂; default 1e-8
        (PyTorch's).
      amsgrad: PyTorch's AMSGrad: v̂ uses the running maximum of v.
      **kwargs: as `keras.optimizers.Adam` (weight_decay is AdamW's).
    """

    def __init__(
        self,
        learning_rate: _LEARNING_RATE = 0.001,
        beta_1: _BETA = 0.9,
        beta_2: _BETA = 0.999,
        epsilon: settings.NonNegativeNumber(example=1e-8) = 1e-8,
        amsgrad: settings.Bool = False,
        **kwargs,
    ):
        kwargs.setdefault("name", "torch_adam")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            **kwargs,
        )

    def bias_powers(self):
        """(β1ᵗ, β2ᵗ) of the coming step t, in float64 (PyTorch computes
        its bias corrections in Python floats)."""
        step = ops.cast(self.iterations + 1, "float64")
        return tuple(
            ops.power(ops.cast(beta, "float64"), step)
            for beta in (self.beta_1, self.beta_2)
        )

    def update_step(self, gradient, variable, learning_rate):
        """PyTorch's `_single_tensor_adam` for one variable."""
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        beta_1_power, beta_2_power = self.bias_powers()
        step_size = ops.cast(learning_rate, "float64") / (1 - beta_1_power)
        step_size = ops.cast(step_size, dtype)
        correction2_sqrt = ops.cast(ops.sqrt(1 - beta_2_power), dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(gradient - m, 1 - self.beta_1))
        self.assign_add(
            v, ops.multiply(ops.square(gradient) - v, 1 - self.beta_2)
        )
        if self.amsgrad:
            v_max = self._velocity_hats[index]
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        denominator = ops.sqrt(v) / correction2_sqrt + self.epsilon
        self.assign_sub(variable, step_size * (m / denominator))
