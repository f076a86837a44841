"""Spectral normalisation with the released PEN-Net's (PyTorch's) semantics."""

import numbers

import keras
import tensorflow as tf


def _normalize(vector, eps):
    """``vector / max(||vector||, eps)``, as ``torch.nn.functional.normalize``."""
    return vector / tf.maximum(tf.norm(vector), eps)


def _unit_normal(shape, dtype=None):
    """A random unit vector (PyTorch's initial ``weight_u`` / ``weight_v``)."""
    vector = tf.random.normal(shape, dtype="float32")
    return tf.cast(vector / tf.norm(vector), dtype or "float32")


@keras.saving.register_keras_serializable(package="penet_tf")
class SpectralNorm(keras.layers.Wrapper):
    """Spectral normalisation of a convolution, as the released PEN-Net trains it.

    The re-parametrisation of ``torch.nn.utils.spectral_norm`` (the released
    ``core/spectral_norm.py``): the wrapped layer's ``kernel`` is the trainable tensor W
    (PyTorch's ``weight_orig``); ``vector_u`` and ``vector_v`` are float32 state. Every
    call with ``training=True`` first runs ``power_iterations`` power iterations on the
    stored vectors, ``v = normalize(Wᵀ u)``, ``u = normalize(W v)`` (W as a matrix
    [out, in·kh·kw]; the vectors are constants for the gradient), stores them, and then
    convolves with ``W / sigma``, ``sigma = u · (W v)``, the gradient flowing through
    sigma into W. With ``training=False`` there is no iteration: ``W / (u · W v)`` with the
    stored vectors. So the optimizer moves W, never the normalised kernel, and each
    training call moves sigma, as in PyTorch (``keras.layers.SpectralNormalization``
    instead overwrites the kernel with kernel / sigma and takes no gradient through sigma).

    The power iteration and the vectors stay float32 under mixed precision; only the
    convolution runs in the wrapped layer's compute dtype. ``vector_v`` is ordered as the
    rows of ``reshape(kernel, [-1, out])`` (kh, kw, in), PyTorch's ``weight_v`` as
    (in, kh, kw): ``penet_tf.convert_torch`` permutes between the two exactly.

    Under ``MirroredStrategy`` and ``MultiWorkerMirroredStrategy`` the vectors need no
    all-reduce: the power iteration depends only on W and u, which are the same on every
    replica, so every replica computes the same new vectors; they are
    ``ONLY_FIRST_REPLICA`` variables, so the first replica's value is written to all copies.

    Args:
        layer: a ``keras.layers.Conv2D`` (or ``Conv1D`` / ``Conv3D``: a layer with a
            ``[..., in, out]`` ``kernel``, ``convolution_op``, ``use_bias`` / ``bias``
            and ``activation``; either ``data_format``).
        power_iterations: power iterations per training call (1 as released).
        eps: the normalisation's floor, PyTorch's ``eps`` (1e-12).
        **kwargs: base layer arguments.

    Call arguments:
        inputs: the wrapped layer's input.
        training: whether to run the power iteration (and store its vectors).

    Example:

    >>> conv = SpectralNorm(keras.layers.Conv2D(8, 5, use_bias=False))
    >>> conv(tf.zeros([1, 16, 16, 3]), training=True).shape
    TensorShape([1, 12, 12, 8])
    """

    def __init__(self, layer, power_iterations=1, eps=1e-12, **kwargs):
        kwargs.setdefault("dtype", "float32")  # the iteration's precision, not the conv's
        super().__init__(layer, **kwargs)
        if (
            isinstance(power_iterations, bool)
            or not isinstance(power_iterations, numbers.Integral)
            or power_iterations < 1
        ):  # (1.7 ran 1 iteration without a word)
            raise ValueError(
                f"SpectralNorm: power_iterations must be an integer >= 1, got {power_iterations!r}."
            )
        self.power_iterations = int(power_iterations)
        self.eps = float(eps)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if not hasattr(self.layer, "kernel"):
            raise ValueError(f"SpectralNorm: {self.layer.name} has no kernel to normalise.")
        if not hasattr(self.layer, "convolution_op") or self.layer.kernel.shape.rank < 3:
            # (a Dense, Conv2DTranspose or DepthwiseConv2D built, then failed at its
            # first call with an AttributeError; a transposed kernel's last axis is not
            # its outputs)
            raise ValueError(
                f"SpectralNorm wraps a Conv1D, Conv2D or Conv3D layer (its kernel "
                f"[..., in, out], convolution_op), got {type(self.layer).__name__} "
                f"{self.layer.name!r}."
            )
        shape = self.layer.kernel.shape
        self.vector_u = self.add_weight(
            shape=(shape[-1],),
            initializer=_unit_normal,
            trainable=False,
            name="vector_u",
            dtype="float32",
            aggregation="only_first_replica",
        )
        self.vector_v = self.add_weight(
            shape=(shape.num_elements() // shape[-1],),
            initializer=_unit_normal,
            trainable=False,
            name="vector_v",
            dtype="float32",
            aggregation="only_first_replica",
        )
        self.built = True

    def _matrix(self):
        """W as [in·kh·kw, out] (Keras order): ``matrix @ v`` is PyTorch's ``Wᵀ u``."""
        kernel = tf.cast(self.layer.kernel, tf.float32)
        return tf.reshape(kernel, [-1, kernel.shape[-1]])

    def sigma(self, training=False):
        """The largest singular value estimate (runs and stores the iteration if training)."""
        matrix = self._matrix()
        u, v = self.vector_u, self.vector_v
        if training:
            u, v = tf.convert_to_tensor(u), tf.convert_to_tensor(v)
            frozen = tf.stop_gradient(matrix)
            for _ in range(self.power_iterations):
                v = _normalize(tf.linalg.matvec(frozen, u), self.eps)
                u = _normalize(tf.linalg.matvec(frozen, v, transpose_a=True), self.eps)
            self.vector_u.assign(u)
            self.vector_v.assign(v)
        u, v = tf.stop_gradient(tf.convert_to_tensor(u)), tf.stop_gradient(tf.convert_to_tensor(v))
        return tf.tensordot(u, tf.linalg.matvec(matrix, v, transpose_a=True), 1)

    def normalized_kernel(self, training=False):
        """``W / sigma`` in float32, the kernel the convolution uses."""
        return tf.cast(self.layer.kernel, tf.float32) / self.sigma(training)

    def call(self, inputs, training=False):
        layer = self.layer
        dtype = layer.compute_dtype
        kernel = tf.cast(self.normalized_kernel(training), dtype)
        outputs = layer.convolution_op(tf.cast(inputs, dtype), kernel)
        if layer.use_bias:
            bias = tf.cast(layer.bias, dtype)
            if getattr(layer, "data_format", "channels_last") == "channels_first":
                # (added along the last axis, a channels_first output's last spatial one)
                bias = tf.reshape(bias, [-1] + [1] * (len(outputs.shape) - 2))
            outputs = outputs + bias
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(power_iterations=self.power_iterations, eps=self.eps)
        return config
