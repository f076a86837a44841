"""Inference on images of any size: the one path shared by export, conversions and the CLI.

Data flows image -> mask -> model -> composite: ``inpaint`` takes float images in
[-1, 1] of any height and width, reflects them up to a multiple of 64, runs the generator,
crops back and composites the prediction into the known pixels (paper eq 7).

``serve`` is the uint8 function every SavedModel signature and the ``inpaint`` CLI run:
``check_request`` first (shape-only graph assertions: rank, channels, sizes, the pixel
budget on the *padded* size), and nothing else - no cast, pad or decode - starts before
those checks pass (``gate``), so a huge or malformed request is refused in milliseconds.
``composite_uint8`` is the uint8 composite shared by ``serve`` and the conversions;
``serve`` runs it with ``composite_only=True``: the finest attention layer then scores
only the queries that reach the hole (``Generator``'s ``output_mask``).
"""

import os

import tensorflow as tf
from google.protobuf.message import DecodeError

from penet_tf.image_io import HOLE_THRESHOLD
from penet_tf.io_utils import check_utf8_path
from penet_tf.losses import composite
from penet_tf.models.generator import SIZE_MULTIPLE, check_image_and_mask


def reflect_indices(size, padded_size):
    """Indices 0 .. padded_size - 1 of a mirror extension of 0 .. size - 1 (any amount)."""
    period = tf.maximum(2 * (size - 1), 1)
    position = tf.math.floormod(tf.range(padded_size), period)
    return tf.where(position < size, position, period - position)


def reflect_pad_to_multiple(images, multiple=SIZE_MULTIPLE):
    """Pads [B, H, W, C] at the bottom and right, by reflection, to multiples of ``multiple``.

    Works for any amount of padding (repeated reflection for images smaller than the
    padding), with gathers, so the channel count stays static (TFLite needs it).
    """
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    padded_h = (height + multiple - 1) // multiple * multiple
    padded_w = (width + multiple - 1) // multiple * multiple
    images = tf.gather(images, reflect_indices(height, padded_h), axis=1)
    return tf.gather(images, reflect_indices(width, padded_w), axis=2)


def inpaint(generator, image, mask, composite_only=False, check_values=True):
    """Runs ``generator`` on float images of any size.

    Args:
        generator: a ``penet_tf.Generator``.
        image: float32 [B, H, W, 3] in [-1, 1].
        mask: float32 [B, H, W, 1], 1 = hole.
        composite_only: with ``True`` only the composite is exact: the generator is
            called with ``output_mask`` (the hole), so its finest attention layer scores
            only the queries that reach the hole's rows, and ``output`` is the raw
            prediction only there. The composite is the same (within float rounding).
        check_values: refuse values out of range (NaN, an image outside [-1, 1], a mask
            outside [0, 1]): a ``ValueError`` called eagerly, assertions in a graph. A
            0/255 mask gave a composite of -254 to +254, and a 0-255 image its own
            nonsense, without a word. ``False`` where they are known to be in range.

    Returns:
        ``(output, inpainted)``, both float32 [B, H, W, 3]: the raw prediction and the
        composite (prediction in the hole, ``image`` elsewhere).
    """
    # Checked before padding (a wrong image was reported with its padded shape; an image
    # and mask of different sizes ran the whole generator, then failed in a Mul op).
    image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
    checks = check_image_and_mask(image, mask, multiple=1, who="inpaint")
    if check_values:
        checks = checks + _check_library_values(image, mask)
    with tf.control_dependencies(checks):
        image = tf.cast(image, tf.float32)
    mask = tf.cast(mask, tf.float32)
    shape = tf.shape(image)
    # The mask is reflected with the image: reflected hole pixels stay holes.
    padded_mask = reflect_pad_to_multiple(mask)
    extra = {}
    if composite_only:
        # Only the pixels cropped back need the prediction: the hole itself.
        padded_shape = tf.shape(padded_mask)
        extra["output_mask"] = tf.pad(
            mask,
            [[0, 0], [0, padded_shape[1] - shape[1]], [0, padded_shape[2] - shape[2]], [0, 0]],
        )
    output, _ = generator(reflect_pad_to_multiple(image), padded_mask, **extra)
    output = tf.cast(output, tf.float32)[:, : shape[1], : shape[2], :]
    return output, composite(output, image, mask)


_IMAGE_ADVICE = (
    "convert 0-255 photos with penet_tf.inference.uint8_to_float, or give them to "
    "composite_uint8 as they are"
)
_MASK_ADVICE = "turn a 0/255 or bool mask into 0/1 with penet_tf.inference.hole_mask"


def _check_library_values(image, mask):
    """``check_float_values`` for ``inpaint``: called eagerly, a ``ValueError`` naming
    the values found; in a graph, its assertions (with the library's advice)."""
    image, mask = tf.cast(image, tf.float32), tf.cast(mask, tf.float32)
    if not tf.executing_eagerly():
        return check_float_values(image, mask, _IMAGE_ADVICE, _MASK_ADVICE)
    for name, values, wanted, advice in (
        ("image", image, "[-1, 1]", _IMAGE_ADVICE),
        ("mask", mask, "[0, 1] (1 = hole)", _MASK_ADVICE),
    ):
        if not bool(_values_ok(name, values)):
            least, most = float(tf.reduce_min(values)), float(tf.reduce_max(values))
            finite = bool(tf.reduce_all(tf.math.is_finite(values)))
            found = "NaN or infinity" if not finite else f"values from {least:g} to {most:g}"
            raise ValueError(f"inpaint: {name} must hold floats in {wanted}, got {found}; {advice}")
    return []


def _values_ok(name, values):
    """Whether float ``values`` are finite and in the range of ``name`` ("image": [-1, 1]
    with ``FLOAT_TOLERANCE``; "mask": [0, 1]), as a boolean tensor."""
    low, high = (-1.0 - FLOAT_TOLERANCE, 1.0 + FLOAT_TOLERANCE) if name == "image" else (0.0, 1.0)
    return tf.logical_and(
        tf.reduce_all(tf.math.is_finite(values)),
        tf.logical_and(tf.reduce_min(values) >= low, tf.reduce_max(values) <= high),
    )


def uint8_to_float(image):
    """uint8 [0, 255] -> float32 [-1, 1] (as the released network's x / 127.5 - 1)."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def float_to_uint8(image):
    """float32 [-1, 1] -> uint8, rounded to nearest."""
    return tf.cast(tf.clip_by_value(tf.round((image + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def padded_size(size, multiple=SIZE_MULTIPLE):
    """``size`` rounded up to a multiple of ``multiple`` (what the graph really runs on)."""
    return (size + multiple - 1) // multiple * multiple


def padded_pixels(height, width, multiple=SIZE_MULTIPLE):
    """Pixels the generator runs on for an H x W image (both padded to ``multiple``)."""
    return padded_size(height, multiple) * padded_size(width, multiple)


def pixel_limit_message(max_pixels):
    """The refusal of an image over the pixel budget (graph assertion and CLIs alike)."""
    return (
        f"image is larger than the server limit of {max_pixels} pixels per image "
        f"(height x width, each padded up to a multiple of {SIZE_MULTIPLE})"
    )


def gate(checks, *tensors):
    """``tensors`` behind ``checks``: nothing computed from the results can start before
    every check has passed (assertions alone only order stateful ops)."""
    with tf.control_dependencies(checks):
        return [tf.identity(tensor) for tensor in tensors]


def assert_rank(tensor, rank, message):
    """An assertion that ``tensor`` has ``rank`` dimensions, read when the graph runs: of
    ``tensor`` with its static shape hidden (a ``PlaceholderWithDefault`` of unknown shape
    passes it through), so tracing does not turn it into the signature's rank (Python's
    ``tf.rank`` of a [None, None, None, C] input is the constant 4). In a session of
    TensorFlow's default options (TF Serving's) it runs; where Grappler trusts the
    declared shapes (a signature called eagerly with unchecked tensors, a session with
    AGGRESSIVE constant folding) it is folded away and the later checks speak."""
    hidden = tf.raw_ops.PlaceholderWithDefault(input=tensor, shape=tf.TensorShape(None))
    return tf.debugging.assert_equal(tf.rank(hidden), rank, message=message)


def check_request(image, mask, max_pixels):
    """Graph assertions on a request (InvalidArgumentError naming the problem).

    Shape-only: they read no pixel, so they cost microseconds whatever the request's
    size. Rank first (``assert_rank``: a ``tf.rank`` of a signature's [None, None, None,
    C] input was the constant 4 once traced, so where a server feeds tensors unchecked,
    as TF Serving does, an image without its batch axis was told it lacked 3 channels,
    a [B, H, W] mask got "Invalid reduction dimension"); the other checks run after it.
    (In a TF1 session of default options, as TF Serving runs a SavedModel; see
    ``assert_rank`` for where it is folded. An ``EnsureShape`` added for those cases fired
    before the rank check in the session, naming an inlined node instead of the input.)
    Returns the list of assertions to depend on.
    """
    rank = [
        assert_rank(
            image, 4, "image must have rank 4: [batch, H, W, 3] (one image is a batch of 1)"
        ),
        assert_rank(mask, 4, "mask must have rank 4: [batch, H, W, 1] (one mask is a batch of 1)"),
    ]
    with tf.control_dependencies(rank):
        image_shape, mask_shape = tf.shape(image, tf.int64), tf.shape(mask, tf.int64)
    # Each tensor against its own batch * H * W, so one problem fails one assertion.
    image_pixels = tf.reduce_prod(image_shape[:3])
    mask_pixels = tf.reduce_prod(mask_shape[:3])
    multiple = tf.constant(SIZE_MULTIPLE, tf.int64)
    padded = padded_pixels(image_shape[1], image_shape[2], multiple)
    return rank + [
        tf.debugging.assert_positive(
            image_shape[0], message="empty batch: send at least one image"
        ),
        tf.debugging.assert_positive(
            image_shape[1:3], message="image height and width must be at least 1"
        ),
        # Sizes, not shape[-1]: those survive constant folding against the signature's
        # static channel count, so a server that feeds tensors unchecked still says why.
        tf.debugging.assert_equal(
            tf.size(image, tf.int64),
            3 * image_pixels,
            message="image must have 3 channels (RGB): [batch, H, W, 3]",
        ),
        tf.debugging.assert_equal(
            image_shape[0], mask_shape[0], message="image and mask batch sizes differ"
        ),
        tf.debugging.assert_equal(
            image_shape[1:3],
            mask_shape[1:3],
            message="image and mask height/width differ (mask must be [batch, H, W, 1])",
        ),
        tf.debugging.assert_equal(
            tf.size(mask, tf.int64),
            mask_pixels,
            message="mask must have 1 channel: [batch, H, W, 1]",
        ),
        tf.debugging.assert_less_equal(
            padded, tf.constant(max_pixels, tf.int64), message=pixel_limit_message(max_pixels)
        ),
    ]


def check_float_values(
    image,
    mask,
    image_advice="send 0-255 images to serving_default",
    mask_advice="1 = hole",
):
    """Assertions that a float request holds finite values in range (they read every
    value: run them behind ``check_request``). 0-255 floats are refused, not clipped."""
    image_ok, mask_ok = _values_ok("image", image), _values_ok("mask", mask)
    return [
        tf.debugging.Assert(
            image_ok,
            [
                "image must hold finite floats in [-1, 1] (uint8 / 127.5 - 1); it holds NaN, "
                f"infinity or values outside ({image_advice})"
            ],
        ),
        tf.debugging.Assert(mask_ok, [f"mask must hold finite floats in [0, 1] ({mask_advice})"]),
    ]


# Float slack allowed around [-1, 1] in predict_float (rounding of x / 127.5 - 1).
FLOAT_TOLERANCE = 1e-5


def composite_uint8(generator, image, mask, composite_only=False):
    """uint8 image [B, H, W, 3], uint8 mask [B, H, W, 1] -> uint8 composite; no checks.

    The mask is taken as binarised: nonzero = hole (``binary_mask``). For a mask by the
    rule of every other path (an antialiased edge's faint pixels known), give it
    ``hole_mask(mask)`` first: a raw soft-edged mask lost up to 41,712 known pixels of a
    700 x 500 photo (``serve`` applies the rule before it).

    ``composite_only=True`` (what ``serve`` runs) lets the generator compute its finest
    attention only for the hole's rows (see ``inpaint``): same composite, data-dependent
    shapes. The default keeps every shape static, which the conversions need (the
    TF.js rewrite turns rank-5 slices into rank-4 ones only for static shapes).

    Known pixels are copied bit for bit, hole pixels are the rounded prediction. The one
    uint8 composite: ``serve`` (every SavedModel signature) and the conversions (TFLite,
    TF.js, ONNX, which have no assertion ops) run it. The mask is compared in float (a
    uint8 constant in the graph breaks TF.js loading), and the selection runs in float
    too (TFLite's SELECT_V2 has no broadcasting uint8 kernel).
    """
    hole = binary_mask(mask)
    _, inpainted = inpaint(  # (in range: converted from uint8, the hole 0/1)
        generator, uint8_to_float(image), hole, composite_only, check_values=False
    )
    rounded = tf.clip_by_value(tf.round((inpainted + 1.0) * 127.5), 0.0, 255.0)
    return tf.cast(tf.where(hole > 0, rounded, tf.cast(image, tf.float32)), tf.uint8)


def serve(generator, image, mask, max_pixels):
    """uint8 image [B, H, W, 3] and mask [B, H, W, 1] -> uint8 inpainted, after the checks.

    The one inference function every export and the ``inpaint`` CLI wrap: nothing runs
    before ``check_request`` has passed. The mask is binarised by the mask rule
    (``hole_mask``): 0/1 masks, 0/255 masks and antialiased edges alike.
    """
    image, mask = gate(check_request(image, mask, max_pixels), image, mask)
    hole = tf.cast(hole_mask(mask), tf.uint8)
    return composite_uint8(generator, image, hole, composite_only=True)


def binary_mask(mask):
    """A binarised mask (0/1, 0/255, bool, float) -> float32 with 1 where nonzero (a hole).

    For masks that are binary already (``hole_mask`` output, the converted models' inputs).
    """
    return tf.cast(tf.not_equal(tf.cast(mask, tf.float32), 0.0), tf.float32)


def hole_mask(mask):
    """The mask rule of ``penet_tf.image_io.MASK_RULE`` in the graph.

    uint8 masks [B, H, W, 1] -> float32 0/1 [B, H, W, 1]: a hole where the value is at
    least ``HOLE_THRESHOLD`` (128), or, in a mask whose values are all 0 or 1, where it
    is 1. Each image of the batch is judged on its own mask.
    """
    values = tf.cast(mask, tf.float32)
    peak = tf.reduce_max(values, axis=[1, 2, 3], keepdims=True)
    threshold = tf.where(peak <= 1.0, 1.0, float(HOLE_THRESHOLD))
    return tf.cast(values >= threshold, tf.float32)


def load_saved_model(path, flag):
    """``tf.saved_model.load(path)``; a SavedModel whose files cannot be read (its
    variables' data missing or cut short) is one ``ValueError`` naming ``flag`` and the
    reason (a 47-line ``OpError`` traceback before)."""
    # (TensorFlow's "'utf-8' codec can't encode", no path; it reads a relative path as given)
    check_utf8_path(path, flag, absolute=False)
    try:
        return tf.saved_model.load(path)
    # (cut short: IndexError; its variables/ folder gone: FileNotFoundError)
    except (tf.errors.OpError, IndexError, DecodeError, FileNotFoundError) as error:
        text = getattr(error, "message", None) or str(error) or type(error).__name__
        reason = text.strip().splitlines()[0][:300]
        raise ValueError(f"{flag} {path}: cannot load the SavedModel ({reason})") from None


def check_inpainting_signature(loaded, path, flag):
    """``loaded``'s ``serving_default`` if it is penet_tf's (uint8 ``image`` and ``mask``
    in, ``inpainted`` out), else one ``ValueError`` naming ``flag``: another SavedModel (a
    Keras ``model.export``) failed at its first photo with a 271-line traceback that
    printed the photo's pixels."""
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"{flag} {path}: the SavedModel has no serving_default signature")
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    found = {
        name: (spec.dtype, spec.shape[-1] if spec.shape.rank else spec.shape.rank)
        for name, spec in inputs.items()
    }
    outputs = list(signature.structured_outputs)
    if found != {"image": (tf.uint8, 3), "mask": (tf.uint8, 1)} or "inpainted" not in outputs:
        takes = ", ".join(f"{name} {spec.dtype.name} {spec.shape}" for name, spec in inputs.items())
        raise ValueError(
            f"{flag} {path}: not a penet_tf SavedModel (its serving_default takes "
            f"{takes or 'nothing'} and returns {', '.join(outputs) or 'nothing'}; penet_tf's "
            "takes uint8 image [B, H, W, 3] and mask [B, H, W, 1] and returns inpainted): "
            "export one with python -m penet_tf.export"
        )
    return signature


class ServingArchive(tf.__internal__.tracking.AutoTrackable):
    """A generator and its named graph functions, written as one SavedModel.

    What ``keras.export.ExportArchive`` writes (the same signatures, the same variables
    and ``variables`` / ``trainable_variables`` / ``non_trainable_variables`` on the
    loaded object), traced once instead of twice: the Keras archive traces every
    endpoint before saving to list the variables it uses, and ``tf.saved_model.save``
    traces it again (a ``tf.function``'s trace cache is keyed on the save context). Here
    the variables are the generator's and each endpoint is traced once, inside the save:
    a thin generator's export takes 24 s instead of 39-44 s. Endpoints are plain graph
    code, traced without AutoGraph.

    Args:
        generator: the model whose variables the endpoints use.

    Example:

    >>> archive = ServingArchive(generator)
    >>> archive.add_endpoint(
    ...     "serving_default",
    ...     lambda image, mask: {"inpainted": composite_uint8(generator, image, mask)},
    ...     [tf.TensorSpec([1, 256, 256, 3], tf.uint8), tf.TensorSpec([1, 256, 256, 1], tf.uint8)],
    ... )
    >>> archive.write_out("/tmp/penet/1")
    """

    def __init__(self, generator):
        super().__init__()
        if not generator.built:  # (its variables, made while tracing, were not saved)
            raise ValueError(
                "the generator is not built: call generator.build() (or call it on an "
                "image and mask) before exporting it"
            )
        # The tf.Variables under Keras' variables are what the SavedModel holds, as in
        # keras.export.ExportArchive; not the Keras model or its Keras variables. With
        # those tracked, each variable was written twice, and a TF1 session (what
        # tensorflow_model_server and `saved_model_cli run` load a SavedModel into)
        # restored one copy while the graph read the other: every request failed with
        # FAILED_PRECONDITION "Could not find variable generator_1/up_conv02/kernel"
        # (tensorflow/serving#2226). tf.saved_model.load binds them right either way.
        self.variables = [variable.value for variable in generator.variables]
        self.trainable_variables = [v.value for v in generator.trainable_variables]
        self.non_trainable_variables = [v.value for v in generator.non_trainable_variables]
        self._endpoints = []

    def add_endpoint(self, name, function, input_signature):
        """Adds ``function`` (tensors -> dict of tensors) as signature ``name``."""
        if name in self._endpoints:
            raise ValueError(f"endpoint {name!r} is already defined")
        setattr(self, name, tf.function(function, input_signature=input_signature, autograph=False))
        self._endpoints.append(name)

    def write_out(self, path, verbose=False):
        """Writes the SavedModel to ``path`` (traces every endpoint once).

        ``verbose`` is accepted for ``keras.export.ExportArchive`` compatibility."""
        del verbose
        signatures = {name: getattr(self, name) for name in self._endpoints}
        tf.saved_model.save(self, os.fspath(path), signatures=signatures)
