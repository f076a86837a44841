"""The released trainer's optimizer: Adam with PyTorch's epsilon placement."""

import keras
from keras import ops

EPSILON_PLACEMENTS = ("torch", "keras")


@keras.saving.register_keras_serializable(package="penet_tf")
class TorchAdam(keras.optimizers.Adam):
    """Adam exactly as ``torch.optim.Adam`` computes it (the released trainer's optimizer).

    PyTorch adds ``epsilon`` to ``sqrt(v̂)`` after the bias correction,

        w -= lr / (1 - β₁ᵗ) · m / (sqrt(v) / sqrt(1 - β₂ᵗ) + ε),

    while ``keras.optimizers.Adam`` adds it before (``sqrt(v) + ε`` with the correction
    folded into the step size). The two differ where ``sqrt(v̂)`` is not much larger
    than ε: in the first steps of weights with small gradients. Everything else (the
    moment updates, ``learning_rate`` schedules, ``LossScaleOptimizer`` wrapping,
    checkpointing) is Keras' Adam. ``amsgrad`` is not supported.

    Args:
        learning_rate, beta_1, beta_2, epsilon: as ``keras.optimizers.Adam``
            (``epsilon`` 1e-8 as PyTorch's default).
        **kwargs: other ``keras.optimizers.Adam`` arguments.

    Example:

    >>> optimizer = TorchAdam(1e-4, beta_1=0.5, beta_2=0.999)
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("TorchAdam does not support amsgrad.")
        kwargs.pop("amsgrad", None)
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        correction_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        correction_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(correction_2)), self.epsilon)
        self.assign_sub(
            variable, ops.multiply(ops.divide(lr, correction_1), ops.divide(m, denominator))
        )


def make_adam(learning_rate, beta_1, beta_2, epsilon, epsilon_placement="torch"):
    """``TorchAdam`` (``"torch"``, the released configs) or ``keras.optimizers.Adam``."""
    if epsilon_placement == "torch":
        return TorchAdam(learning_rate, beta_1, beta_2, epsilon)
    if epsilon_placement == "keras":
        return keras.optimizers.Adam(learning_rate, beta_1, beta_2, epsilon)
    raise ValueError(
        f"Unknown epsilon_placement {epsilon_placement!r}: expected one of "
        f"{', '.join(EPSILON_PLACEMENTS)}."
    )
