"""Image inpainting metrics: the paper's (L1, MS-SSIM, IS, FID) and the release's (MAE, PSNR, SSIM).

Every paired metric takes uint8 images (or float values on the uint8 scale, 0..255) of
shape [B, H, W, C] and returns one value per image, float64; floats that look like the
models' [-1, 1] or like [0, 1] fractions are refused by name:

* ``l1``: mean |a - b| on [0, 1], times 100 (the paper's "L1 loss" column). ``l1(...,
  mask)`` averages over the hole only (the paper does not say which of the two it reports).
* ``relative_mae``: the release's MAE, sum |a - b| / sum (a + b) on uint8 values.
* ``psnr``: 10 log10(255^2 / MSE) in dB (+inf for identical images).
* ``ssim``: ``tf.image.ssim``'s definition, i.e. Wang et al. 2004 with an 11 x 11
  Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 255, averaged over the
  valid region and the channels, computed in float64. This is scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)`` (within 1e-13).
* ``ssim_win51``: the release's SSIM, scikit-image's default *uniform* 51 x 51 window with
  sample covariance (``structural_similarity(..., win_size=51, data_range=255,
  channel_axis=-1)``), computed here with box sums in float64. It is a different number
  from ``ssim`` (a wide box window averages structure over far larger regions), so the
  two must not be compared with each other. NaN for images smaller than 51 pixels.
* ``ms_ssim``: ``tf.image.ssim_multiscale``'s definition with its five default scales and
  weights, computed in float64 on ``ssim``'s path (its first scale is ``ssim``). It
  needs min(H, W) >= 161 (the coarsest scale must still hold the 11 x 11 window); smaller
  images use fewer scales (the first weights, renormalised to sum to 1) and
  ``ms_ssim_scales`` says how many; below 11 pixels it raises ``ValueError``.

Set metrics (numpy, float64):

* ``frechet_distance`` / ``fid_from_features``: FID, ||mu1 - mu2||^2 + Tr(S1 + S2 -
  2 (S1 S2)^1/2), with ``scipy.linalg.sqrtm`` and the usual guard for singular products.
* ``inception_score``: exp(E_x KL(p(y|x) || p(y))), mean and standard deviation over splits.

Features for FID / IS come from a *feature model*: a Keras model mapping float32 images in
[-1, 1], [B, S, S, 3], to ``(features [B, D], logits [B, K])``. ``inception_model`` builds
the standard one from ``keras.applications.InceptionV3`` (2048-d pool features, 1000
ImageNet logits); tests pass a small random network instead. Keras' ImageNet InceptionV3 is
not the TF1 graph behind published FID numbers, and the paper's IS used a Places365
classifier (Zhou et al.), so absolute FID / IS values are comparable only between runs of
this code, not with the paper's tables.
"""

import math
import os
import warnings

import numpy as np
import scipy.linalg
import tensorflow as tf

from penet_tf.errors import PenetError

MAX_VALUE = 255.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # tf.image.ssim_multiscale's
SSIM_FILTER_SIZE = 11
RELEASE_SSIM_WINDOW = 51
INCEPTION_SIZE = 299
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
)


def _check_scale(image, name):
    """Refuses float images that look like another scale than uint8's: every value within
    [-1, 1] with some negative (the models' [-1, 1]), or within [0, 1] with fractions
    (``convert_image_dtype``'s floats). Such pairs gave plausible wrong numbers: [-1, 1]
    images scored PSNR 68.4 dB, L1 0.03 and SSIM 0.9998 where their uint8 versions score
    26.3 dB, 3.84 and 0.985. (A bicubic resize's overshoot below 0 or above 255, and a
    nearly black photo of whole values, are taken.) Values past 510 (past any resize's or
    sharpening's overshoot), integers or floats, are 16-bit images, which scored PSNR
    -19.8 dB, L1 774 and SSIM 0.466 where their 8-bit versions score 28.4 dB, 3.0 and
    0.641."""
    if image.dtype == tf.bool:
        return
    values = tf.cast(image, tf.float64)
    low, high = float(tf.reduce_min(values)), float(tf.reduce_max(values))
    if high > 510.0:
        raise ValueError(
            f"metrics take images on the uint8 scale (0..255); {name} holds values up to "
            f"{high:.6g}, as 16-bit images (0..65535): scale them to 8 bits (penet_tf reads "
            "16-bit files as value >> 8)"
        )
    if image.dtype.is_integer or high > 1.0 or low < -1.0:
        return
    if low < 0.0:
        scale = "[-1, 1] (convert them with penet_tf.inference.float_to_uint8)"
    elif bool(tf.reduce_any(tf.not_equal(values, tf.round(values)))):
        scale = "[0, 1] (multiply them by 255)"
    else:
        return
    raise ValueError(
        f"metrics take images on the uint8 scale (0..255); {name} holds values from "
        f"{low:.3g} to {high:.3g}, as images in {scale}"
    )


def _pair(a, b):
    a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
    if a.shape.rank != 4 or b.shape.rank != 4:
        raise ValueError(f"expected [batch, H, W, C] images, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} and {b.shape}")
    _check_scale(a, "the first image")
    _check_scale(b, "the second image")
    return tf.cast(a, tf.float64), tf.cast(b, tf.float64)


def l1(a, b, mask=None):
    """Mean |a - b| on the [0, 1] scale, times 100, per image.

    Args:
        a, b: uint8 (or 0..255) images [B, H, W, C].
        mask: optional [B, H, W, 1], nonzero = hole: average over hole pixels only
            (NaN for an image without hole pixels).
    """
    a, b = _pair(a, b)
    error = tf.abs(a - b) / MAX_VALUE
    if mask is None:
        return (100.0 * tf.reduce_mean(error, axis=[1, 2, 3])).numpy()
    expected = tuple(a.shape[:3]) + (1,)
    mask = tf.convert_to_tensor(mask)  # (a list had no .shape)
    if tuple(mask.shape) != expected:  # an RGB mask counted each hole pixel 3 times
        raise ValueError(
            f"mask must be [B, H, W, 1] {expected} for images {tuple(a.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    hole = tf.cast(tf.not_equal(tf.cast(mask, tf.float64), 0.0), tf.float64)
    total = tf.reduce_sum(error * hole, axis=[1, 2, 3])
    count = tf.reduce_sum(hole, axis=[1, 2, 3]) * tf.cast(tf.shape(a)[-1], tf.float64)
    return (100.0 * total / count).numpy()


def relative_mae(a, b):
    """The release's MAE: sum |a - b| / sum (a + b) over uint8 values, per image; 0 for two
    black images (0 / 0: it was NaN, and the overall mean left that image out unsaid)."""
    a, b = _pair(a, b)
    total = tf.reduce_sum(a + b, axis=[1, 2, 3])
    error = tf.reduce_sum(tf.abs(a - b), axis=[1, 2, 3])
    return tf.math.divide_no_nan(error, total).numpy()


def psnr(a, b):
    """Peak signal-to-noise ratio in dB with peak 255, per image (+inf when a == b)."""
    a, b = _pair(a, b)
    mse = tf.reduce_mean(tf.square(a - b), axis=[1, 2, 3]).numpy()
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(MAX_VALUE**2 / mse)


def _gaussian_mean(x, size=SSIM_FILTER_SIZE, sigma=1.5):
    """Gaussian-weighted means over every valid ``size`` x ``size`` window of [B, H, W, C],
    in x's dtype (separable: rows, then columns; the weights of ``tf.image.ssim``)."""
    taps = np.exp(-((np.arange(size) - (size - 1) / 2.0) ** 2) / (2.0 * sigma**2))
    taps = tf.constant(taps / taps.sum(), x.dtype)
    batch, height, width, channels = x.shape
    planes = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, height, width, 1])
    planes = tf.nn.conv2d(planes, tf.reshape(taps, [size, 1, 1, 1]), 1, "VALID")
    planes = tf.nn.conv2d(planes, tf.reshape(taps, [1, size, 1, 1]), 1, "VALID")
    shape = [batch, channels, height - size + 1, width - size + 1]
    return tf.transpose(tf.reshape(planes, shape), [0, 2, 3, 1])


def _check_ssim_size(a):
    if min(a.shape[1], a.shape[2]) < SSIM_FILTER_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_FILTER_SIZE} x {SSIM_FILTER_SIZE} pixels, "
            f"got {a.shape[1]} x {a.shape[2]}"
        )


def _ssim_maps(a, b, mean, covariance_norm=1.0):
    """SSIM's luminance and contrast-structure maps of float64 [B, H, W, C] with the
    window means ``mean`` (Gaussian or box); variances times ``covariance_norm`` (n / (n -
    1) for the sample covariance)."""
    # Centre the values first: the means of squares then lose no precision.
    shift = tf.reduce_mean(a, axis=[1, 2, 3], keepdims=True)
    a, b = a - shift, b - shift
    mean_a, mean_b = mean(a), mean(b)
    var_a = covariance_norm * (mean(a * a) - mean_a * mean_a)
    var_b = covariance_norm * (mean(b * b) - mean_b * mean_b)
    cov = covariance_norm * (mean(a * b) - mean_a * mean_b)
    mean_a, mean_b = mean_a + shift, mean_b + shift
    c1, c2 = (0.01 * MAX_VALUE) ** 2, (0.03 * MAX_VALUE) ** 2
    luminance = (2 * mean_a * mean_b + c1) / (mean_a**2 + mean_b**2 + c1)
    return luminance, (2 * cov + c2) / (var_a + var_b + c2)


def _ssim_terms(a, b):
    """``tf.image.ssim``'s per-channel terms of one scale, in float64: the mean SSIM and
    the mean contrast-structure factor over the valid region, each [B, C]."""
    luminance, contrast_structure = _ssim_maps(a, b, _gaussian_mean)
    return (
        tf.reduce_mean(luminance * contrast_structure, axis=[1, 2]),
        tf.reduce_mean(contrast_structure, axis=[1, 2]),
    )


def ssim(a, b):
    """SSIM with ``tf.image.ssim``'s 11 x 11 Gaussian window (sigma 1.5), per image, in
    float64: ``tf.image.ssim`` computes in float32, and its mean over millions of pixels
    drifts up (0.99997 for a 12-MP pair whose SSIM is 0.99659 at every size; 1.3e-4 off
    scikit-image's value on a bright, flat 64^2 image)."""
    a, b = _pair(a, b)
    _check_ssim_size(a)
    return tf.reduce_mean(_ssim_terms(a, b)[0], axis=-1).numpy()


def _box_mean(x, window):
    """Means over every valid ``window`` x ``window`` box of [B, H, W, C] (summed-area table)."""
    table = tf.pad(tf.cumsum(tf.cumsum(x, axis=1), axis=2), [[0, 0], [1, 0], [1, 0], [0, 0]])
    sums = (
        table[:, window:, window:]
        - table[:, :-window, window:]
        - table[:, window:, :-window]
        + table[:, :-window, :-window]
    )
    return sums / float(window * window)


def ssim_win51(a, b, window=RELEASE_SSIM_WINDOW):
    """The release's SSIM: uniform ``window`` x ``window`` box, sample covariance, per image.

    Equal to scikit-image's ``structural_similarity(a, b, win_size=window, data_range=255,
    channel_axis=-1)``; NaN where the image is smaller than the window.
    """
    a, b = _pair(a, b)
    if min(a.shape[1], a.shape[2]) < window:
        return np.full([a.shape[0]], np.nan)
    luminance, contrast_structure = _ssim_maps(
        a, b, lambda x: _box_mean(x, window), window * window / (window * window - 1.0)
    )
    return tf.reduce_mean(luminance * contrast_structure, axis=[1, 2, 3]).numpy()


def ms_ssim_scales(height, width, filter_size=SSIM_FILTER_SIZE):
    """How many of MS-SSIM's five scales fit an H x W image (the smallest must hold the
    filter; ``tf.image.ssim_multiscale`` halves with ceil). Raises ``ValueError`` below one."""
    side = min(int(height), int(width))
    if side < filter_size:
        raise ValueError(
            f"MS-SSIM needs images of at least {filter_size} x {filter_size} pixels, "
            f"got {height} x {width}"
        )
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and math.ceil(side / 2**scales) >= filter_size:
        scales += 1
    return scales


def _downsample(x):
    """``tf.image.ssim_multiscale``'s next scale: odd sides padded symmetrically, then the
    means of 2 x 2 blocks."""
    height, width = x.shape[1], x.shape[2]
    x = tf.pad(x, [[0, 0], [0, height % 2], [0, width % 2], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def _scale_terms(a, b, scales):
    """``_ssim_terms`` at each of the first ``scales`` scales."""
    terms = []
    for scale in range(scales):
        if scale:
            a, b = _downsample(a), _downsample(b)
        terms.append(_ssim_terms(a, b))
    return terms


def _ms_ssim_value(terms):
    """MS-SSIM per image from ``_scale_terms``: the contrast-structure factors of all but
    the last scale and the last scale's SSIM, each clipped at 0, raised to the weights
    (the first ``len(terms)``, renormalised below five) and multiplied; the channels'
    mean."""
    weights = np.asarray(MS_SSIM_WEIGHTS[: len(terms)])
    weights = weights / weights.sum() if len(terms) < len(MS_SSIM_WEIGHTS) else weights
    factors = [cs for _, cs in terms[:-1]] + [terms[-1][0]]
    value = 1.0
    for factor, weight in zip(factors, weights, strict=True):
        value *= tf.pow(tf.nn.relu(factor), float(weight))
    return tf.reduce_mean(value, axis=-1).numpy()


def ms_ssim(a, b):
    """MS-SSIM as ``tf.image.ssim_multiscale`` defines it, per image, in float64 (its
    float32 drifted up on large images: 2.2e-3 at 12 MP); ``(values, scales)``.

    Five scales (weights 0.0448 ... 0.1333) when min(H, W) >= 161; fewer for smaller images,
    with the first weights renormalised to sum to 1 (so an image against itself is still 1).
    """
    a, b = _pair(a, b)
    scales = ms_ssim_scales(a.shape[1], a.shape[2])
    return _ms_ssim_value(_scale_terms(a, b, scales)), scales


def paired_metrics(target, prediction, mask=None):
    """Every paired metric of a batch, as ``{name: float64 [B]}`` (plus ``ms_ssim_scales``).

    Args:
        target: the original images, uint8 [B, H, W, 3].
        prediction: the inpainted images, uint8 [B, H, W, 3].
        mask: optional [B, H, W, 1] (nonzero = hole) for ``l1_hole`` and ``hole_ratio``.
    """
    batch = int(target.shape[0])
    values = {
        "l1": l1(target, prediction),
        "l1_hole": np.full([batch], np.nan),
        "hole_ratio": np.full([batch], np.nan),
        "relative_mae": relative_mae(target, prediction),
        "psnr": psnr(target, prediction),
        "ssim_win51": ssim_win51(target, prediction),
    }
    if mask is not None:
        values["l1_hole"] = l1(target, prediction, mask)
        hole = tf.cast(tf.not_equal(tf.cast(mask, tf.float32), 0.0), tf.float64)
        values["hole_ratio"] = tf.reduce_mean(hole, axis=[1, 2, 3]).numpy()
    if min(target.shape[1], target.shape[2]) >= SSIM_FILTER_SIZE:
        # SSIM is MS-SSIM's first scale: its terms computed once serve both.
        scales = ms_ssim_scales(target.shape[1], target.shape[2])
        terms = _scale_terms(*_pair(target, prediction), scales)
        values["ssim"] = tf.reduce_mean(terms[0][0], axis=-1).numpy()
        values["ms_ssim"] = _ms_ssim_value(terms)
    else:  # too small even for one scale (and for SSIM's window)
        values["ssim"] = np.full([batch], np.nan)
        values["ms_ssim"], scales = np.full([batch], np.nan), 0
    values["ms_ssim_scales"] = np.full([batch], scales, np.int64)
    return values


# ---------------------------------------------------------------------------- FID and IS


def feature_statistics(features):
    """Mean and covariance (float64, unbiased) of features [N, D]; needs N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need [N >= 2, D] features for a covariance, got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^1/2)``, float64.
    When the product is singular (fewer samples than dimensions) ``sqrtm`` may return
    non-finite values: then ``eps`` is added to both diagonals. A tiny imaginary part
    (rounding) is dropped; a large one raises ``ValueError``.
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two distributions have different dimensions")
    if sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"covariance {sigma1.shape} does not match mean {mu1.shape}")
    with warnings.catch_warnings():  # (singular below D samples: handled here, and the
        # report says so; scipy's "Matrix is singular" warning printed a source line)
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(mu1.size) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > 1e-3 * max(1.0, np.abs(np.diagonal(covmean).real).max()):
            raise ValueError(f"sqrtm(sigma1 sigma2) has a large imaginary part ({imaginary:g})")
        covmean = covmean.real
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def fid_from_features(features1, features2):
    """FID between two feature sets [N1, D] and [N2, D] (N >= 2 each)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def inception_score(logits=None, probabilities=None, splits=10):
    """Inception Score from class logits or probabilities [N, K]; ``(mean, std)`` over splits.

    The N images are cut into ``min(splits, N)`` consecutive, nearly equal parts; each part
    scores exp(mean_x KL(p(y|x) || p(y))) with p(y) the part's mean prediction.
    """
    if (logits is None) == (probabilities is None):
        raise ValueError("give exactly one of logits or probabilities")
    given = np.asarray(logits if probabilities is None else probabilities, np.float64)
    if given.ndim != 2 or given.shape[0] < 1:
        raise ValueError(f"expected [N >= 1, K] predictions, got {given.shape}")
    if probabilities is None:
        logits = given
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    else:
        probabilities = given
        with np.errstate(divide="ignore"):
            log_p = np.log(probabilities)
    p = np.exp(log_p)
    scores = []
    for part_p, part_log_p in zip(
        np.array_split(p, min(splits, len(p))),
        np.array_split(log_p, min(splits, len(p))),
        strict=True,
    ):
        marginal = part_p.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part_p > 0, part_p * (part_log_p - np.log(marginal)), 0.0).sum(axis=1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def feature_inputs(images, size):
    """uint8 [B, H, W, 3] -> float32 [B, size, size, 3] in [-1, 1] (bilinear resize), the
    input of a feature model (InceptionV3's "tf" preprocessing); ``size=None`` keeps H x W."""
    images = tf.cast(images, tf.float32)
    if size is not None:
        images = tf.image.resize(images, [size[0], size[1]], method="bilinear")
    return images / 127.5 - 1.0


def model_input_size(model):
    """(height, width) a feature model expects, or None when its input size is free."""
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def extract_features(model, images):
    """``(features float64 [B, D], logits float64 [B, K])`` of images [B, H, W, 3] on the
    uint8 scale (0..255; others refused by name: a generator's [-1, 1] output was divided
    by 127.5 again, and Inception saw black)."""
    images = tf.convert_to_tensor(images)
    _check_scale(images, "images")
    inputs = feature_inputs(images, model_input_size(model))
    features, logits = model(inputs, training=False)
    return np.asarray(features, np.float64), np.asarray(logits, np.float64)


class InceptionWeightsError(PenetError, RuntimeError):
    """The InceptionV3 ImageNet weights are neither cached nor downloadable."""


def inception_model(weights="imagenet"):
    """The standard FID / IS feature model: Keras' InceptionV3 -> (2048-d average-pool
    features, 1000 ImageNet logits), input 299 x 299 in [-1, 1].

    Args:
        weights: ``"imagenet"`` (Keras downloads
            ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5`` once into
            ``~/.keras/models/``), a path to that file, or ``None`` (random; tests only).

    Raises:
        FileNotFoundError: ``weights`` is a path that does not exist.
        InceptionWeightsError: the ImageNet weights could not be downloaded.
    """
    import keras

    if weights not in (None, "imagenet"):
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"no InceptionV3 weights at {weights} (expected the Keras file "
                f"inception_v3_weights_tf_dim_ordering_tf_kernels.h5 from {INCEPTION_WEIGHTS_URL})"
            )
    try:
        base = keras.applications.InceptionV3(include_top=True, weights=weights)
    except FileNotFoundError:
        raise
    except Exception as error:  # keras.utils.get_file raises a bare Exception offline
        if weights != "imagenet":
            raise ValueError(
                f"could not load InceptionV3 weights from {weights}: {error}"
            ) from error
        raise InceptionWeightsError(
            "FID and IS need the InceptionV3 ImageNet weights, which could not be downloaded "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}). On a "
            f"machine with internet access download {INCEPTION_WEIGHTS_URL} and pass it with "
            "--inception-weights PATH (or put it in ~/.keras/models/), or turn FID and IS off "
            "with --no-fid."
        ) from error
    return features_and_logits(base)


def features_and_logits(classifier, pool_layer="avg_pool", top_layer="predictions"):
    """A feature model from a Keras classifier: ``(pool_layer output, logits)``, the logits
    being ``top_layer``'s dense transform without its softmax (same weights)."""
    import keras

    top = classifier.get_layer(top_layer)
    pool = classifier.get_layer(pool_layer).output
    logits_layer = keras.layers.Dense(top.units, name="logits")
    logits = logits_layer(pool)
    logits_layer.set_weights(top.get_weights())
    return keras.Model(classifier.inputs, [pool, logits], name=f"{classifier.name}_features")
