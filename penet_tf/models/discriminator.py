"""The spectral-norm PatchGAN discriminator of PEN-Net (paper section 3.3)."""

import threading

import keras
import tensorflow as tf

from penet_tf.errors import positive_int, require_float
from penet_tf.layers.spectral_norm import SpectralNorm

# Builds run one at a time, whichever thread calls a model first.
_BUILD_LOCK = threading.Lock()

KERNEL_SIZE = 5
STRIDES = (2, 2, 2, 1)
# "released": PyTorch's re-parametrisation (penet_tf.layers.SpectralNorm), as trained by the
# release; "keras": keras.layers.SpectralNormalization (in-place, no gradient through sigma).
SPECTRAL_NORMS = ("released", "keras", "none")


def check_spectral_norm(value):
    """Accepts a name of ``SPECTRAL_NORMS`` (or True / False for "released" / "none")."""
    if value is True:
        return "released"
    if value is False or value is None:
        return "none"
    if value not in SPECTRAL_NORMS:
        raise ValueError(
            f"Unknown spectral_norm {value!r}: expected one of {', '.join(SPECTRAL_NORMS)}."
        )
    return value


def patch_grid_size(size):
    """Side of the logit grid for an input side ``size`` (5 x 5 convolutions, padding 1)."""
    for stride in STRIDES + (1,):
        size = (size + 2 - KERNEL_SIZE) // stride + 1
    return size


# The smallest side with a logit (47: four 5 x 5 convolutions, strides 2, 2, 2, 1).
MIN_SIZE = next(size for size in range(1, 1000) if patch_grid_size(size) >= 1)


@keras.saving.register_keras_serializable(package="penet_tf")
class Discriminator(keras.Model):
    """PatchGAN discriminator with spectral normalisation, as released.

    Four 5 x 5 convolutions without bias (strides 2, 2, 2, 1, padding 1, channels 64,
    128, 256, 512), each spectrally normalised (one power iteration per training call) and
    followed by LeakyReLU(0.2); then a 5 x 5 ``classifier`` convolution with bias to one
    channel. Returns logits (one per patch): the hinge loss uses them directly, the
    non-saturating loss through a sigmoid.

    Spectral normalisation is by default the release's (``penet_tf.layers.SpectralNorm``:
    the kernel W is trainable, each training call runs one power iteration and convolves
    with W / sigma, the gradient flowing through sigma), so a training step moves the
    weights as the released trainer does. ``spectral_norm="keras"`` selects
    ``keras.layers.SpectralNormalization`` instead, which overwrites the kernel with
    kernel / sigma in place and takes no gradient through sigma. Either way the power
    iteration and its vectors stay float32 under mixed precision (fp16 overflows there).

    Args:
        base_channels: channels of the first layer (64 released; small for tests).
        spectral_norm: ``"released"`` (default), ``"keras"`` or ``"none"``.
        **kwargs: base model arguments.

    Call arguments:
        image: float32 [batch, H, W, 3] in [-1, 1]; H, W >= 47.
        training: whether to run the spectral-norm power iteration. The release calls
            D separately on real images and on composites, each call one iteration. A
            fresh discriminator's vectors are random (as the release's): its logits with
            ``training=False`` mean nothing (3.9e6 to 8.0e8 at base 64) until it has trained,
            loaded weights or been called once with ``training=True``.

    Returns:
        Logits [batch, h, w, 1] (27 x 27 for 256 x 256 inputs).

    Example:

    >>> d = Discriminator()
    >>> d(tf.zeros([2, 256, 256, 3])).shape
    TensorShape([2, 27, 27, 1])
    """

    def __init__(self, base_channels=64, spectral_norm="released", **kwargs):
        super().__init__(**kwargs)
        self.base_channels = positive_int(base_channels, "base_channels")
        self.spectral_norm = check_spectral_norm(spectral_norm)
        self.encoder = []
        for index, multiple in enumerate((1, 2, 4, 8)):
            conv = keras.layers.Conv2D(
                base_channels * multiple,
                KERNEL_SIZE,
                data_format="channels_last",  # (not keras.json's image_data_format)
                strides=STRIDES[index],
                use_bias=False,
                kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
                name=f"conv{index}",
                dtype=self.dtype_policy,
            )
            # The wrappers (power iteration, u and v) run in float32.
            if self.spectral_norm == "released":
                conv = SpectralNorm(conv, name=f"encoder{2 * index}", dtype="float32")
            elif self.spectral_norm == "keras":
                conv = keras.layers.SpectralNormalization(
                    conv, power_iterations=1, name=f"encoder{2 * index}", dtype="float32"
                )
            self.encoder.append(conv)
            # TensorFlow's object tracking does not follow Keras' layer lists.
            setattr(self, f"encoder{2 * index}", conv)
        self.classifier = keras.layers.Conv2D(
            1,
            KERNEL_SIZE,
            data_format="channels_last",  # (not keras.json's image_data_format)
            kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
            name="classifier",
            dtype=self.dtype_policy,
        )

    def build(self, image_shape=None):
        with _BUILD_LOCK:  # one build at a time (as the Generator's)
            self._build_layers()

    def _build_layers(self):
        if self.built:
            return
        channels = 3
        for layer in self.encoder:
            layer.build((None, None, None, channels))
            channels = getattr(layer, "layer", layer).filters
        self.classifier.build((None, None, None, channels))
        self.built = True

    def call(self, image, training=False):
        shape = image.shape
        require_float(image.dtype, "Discriminator")
        if shape.rank != 4 or shape[-1] != 3:
            raise ValueError(f"Discriminator: expected image [batch, H, W, 3], got shape {shape}.")
        too_small = f"is too small; H and W must be at least {MIN_SIZE}"
        for size in shape[1:3]:
            if size is not None and patch_grid_size(size) < 1:
                raise ValueError(f"Discriminator: image {shape} {too_small}.")
        if None in shape[1:3]:  # (unchecked, a 40 x 40 image gave its own features back)
            sides = tf.shape(image)[1:3]
            check = tf.debugging.assert_greater_equal(
                sides, MIN_SIZE, message=f"Discriminator: the image {too_small}."
            )
            with tf.control_dependencies([check]):
                image = tf.identity(image)
        features = image
        for layer in self.encoder:
            features = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]])
            if self.spectral_norm != "none":
                features = layer(features, training=training)
            else:
                features = layer(features)
            features = tf.nn.leaky_relu(features, 0.2)
        features = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]])
        return self.classifier(features)

    def export(
        self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs
    ):
        """Keras' ``Model.export``, with the batch, height and width left dynamic unless
        ``input_signature`` is given: Keras took the shape the discriminator was built
        with, so an export from a 64^2 call refused a 96 x 80 image ("Can not cast
        TensorSpec"). The exported ``serve`` is the inference call (``training=False``:
        no power iteration); H, W >= 47."""
        if input_signature is None:
            # (float32 as the generator's signatures; a mixed-precision model casts it)
            input_signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="image")]
        return super().export(
            filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs
        )

    def get_config(self):
        config = super().get_config()
        config.update(base_channels=self.base_channels, spectral_norm=self.spectral_norm)
        return config
