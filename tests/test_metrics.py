"""Metrics against independent computations (scikit-image, NumPy, closed forms) on real photos."""

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from penet_tf import metrics


def _distorted(image, seed, noise=12.0):
    """A realistic degraded copy: blur, noise and a pasted block (as a bad inpainting)."""
    rng = np.random.default_rng(seed)
    blurred = ndimage.gaussian_filter(image.astype(np.float64), sigma=(1.2, 1.2, 0))
    noisy = blurred + rng.normal(0, noise, image.shape)
    h, w = image.shape[:2]
    noisy[h // 4 : h // 2, w // 3 : w // 2] = rng.uniform(0, 255, 3)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos():
    """Two real photographs of one size (not a multiple of 64) and degraded copies."""
    originals = np.stack([data.astronaut()[40:240, 100:330], data.coffee()[100:300, 200:430]])
    degraded = np.stack([_distorted(image, seed) for seed, image in enumerate(originals)])
    return originals, degraded


def test_l1_mae_psnr_match_numpy_and_skimage(photos):
    a, b = photos
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    np.testing.assert_allclose(
        metrics.l1(a, b), 100 * np.abs(a64 / 255 - b64 / 255).mean(axis=(1, 2, 3)), atol=1e-3
    )
    np.testing.assert_allclose(
        metrics.relative_mae(a, b),
        np.abs(a64 - b64).sum(axis=(1, 2, 3)) / (a64 + b64).sum(axis=(1, 2, 3)),
        atol=1e-6,
    )
    expected = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(metrics.psnr(a, b), expected, atol=1e-3)
    assert metrics.psnr(a[:1], a[:1])[0] == np.inf
    assert 10 < metrics.psnr(a, b).min() < 40  # a real difference, not a trivial case
    black = np.zeros((1, 16, 16, 3), np.uint8)  # (0 / 0: NaN, left out of the mean unsaid)
    assert metrics.relative_mae(black, black)[0] == 0.0


def test_l1_over_the_hole(photos):
    a, b = photos
    mask = np.zeros(a.shape[:3] + (1,), np.uint8)
    mask[:, 50:120, 60:150] = 255
    hole = np.broadcast_to(mask != 0, a.shape)
    error = np.abs(a.astype(np.float64) - b) / 255
    expected = [100 * error[i][hole[i]].mean() for i in range(len(a))]
    np.testing.assert_allclose(metrics.l1(a, b, mask), expected, atol=1e-6)
    assert np.isnan(metrics.l1(a, b, np.zeros_like(mask))).all()


def test_ssim_matches_skimage_gaussian_and_release_window(photos):
    a, b = photos
    gaussian = [
        structural_similarity(
            x,
            y,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )
        for x, y in zip(a, b, strict=True)
    ]
    release = [
        structural_similarity(x, y, win_size=51, data_range=255, channel_axis=-1)
        for x, y in zip(a, b, strict=True)
    ]
    np.testing.assert_allclose(metrics.ssim(a, b), gaussian, atol=1e-9)
    # A bright, nearly flat image (tf.image.ssim's float32 was 1.3e-4 off: a 4th decimal).
    flat = np.full((1, 40, 60, 3), 250, np.uint8)
    noisy = np.clip(flat + np.random.default_rng(1).integers(-2, 3, flat.shape), 0, 255)
    expected = structural_similarity(
        flat[0], noisy[0].astype(np.uint8), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, channel_axis=-1,
    )  # fmt: skip
    assert metrics.ssim(flat, noisy)[0] == pytest.approx(expected, abs=1e-9)
    np.testing.assert_allclose(metrics.ssim_win51(a, b), release, atol=1e-3)
    # They are different numbers: the report must never mix them up.
    assert np.abs(np.asarray(gaussian) - release).max() > 0.01
    assert np.isnan(metrics.ssim_win51(a[:, :50], b[:, :50])).all()


def test_ms_ssim_is_one_for_itself_and_falls_with_noise():
    image = data.chelsea()[:, :400][None]  # 300 x 400: all five scales
    value, scales = metrics.ms_ssim(image, image)
    assert scales == 5 and value[0] == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (3, 8, 20, 45):
        noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
        scores.append(metrics.ms_ssim(image, noisy)[0][0])
    assert all(x > y for x, y in zip(scores, scores[1:], strict=False)), scores
    assert scores[-1] < 0.9


def _ms_ssim_numpy(a, b, scales):
    """tf.image.ssim_multiscale's algorithm in NumPy float64 (scipy's filters), for one
    image pair: 11-tap Gaussian (sigma 1.5) valid means, symmetric pad to even sides and
    2 x 2 block means between scales, relu, the first weights renormalised below five."""
    from scipy import ndimage

    taps = np.exp(-((np.arange(11) - 5.0) ** 2) / 4.5)
    taps /= taps.sum()

    def mean(x):
        for axis in (0, 1):
            x = np.moveaxis(ndimage.correlate1d(x, taps, axis=axis, mode="constant"), axis, 0)
            x = np.moveaxis(x[5:-5], 0, axis)
        return x

    a, b = a.astype(np.float64), b.astype(np.float64)
    weights = np.asarray(metrics.MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum() if scales < 5 else weights
    factors = []
    for scale in range(scales):
        if scale:
            a, b = (
                np.pad(x, [(0, x.shape[0] % 2), (0, x.shape[1] % 2), (0, 0)], "symmetric")
                for x in (a, b)
            )
            a, b = (
                x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, 3).mean((1, 3)) for x in (a, b)
            )
        ma, mb = mean(a), mean(b)
        va, vb, cov = mean(a * a) - ma**2, mean(b * b) - mb**2, mean(a * b) - ma * mb
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        cs = (2 * cov + c2) / (va + vb + c2)
        luminance = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
        factors.append((luminance * cs).mean((0, 1)) if scale == scales - 1 else cs.mean((0, 1)))
    powers = [np.maximum(f, 0) ** w for f, w in zip(factors, weights, strict=True)]
    return np.mean(np.prod(powers, axis=0))


def test_ms_ssim_and_ssim_are_float64_and_hold_on_large_images():
    """tf.image.ssim(_multiscale) compute in float32; their means over many pixels drifted
    up: a 1000 x 1000 noisy pair scored MS-SSIM 6e-4 too high (2.2e-3 at 12 MP)."""
    rng = np.random.default_rng(0)
    for height, width in ((165, 171), (1000, 1000)):
        a = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        b = np.clip(a.astype(np.int16) + rng.integers(-10, 11, a.shape), 0, 255).astype(np.uint8)
        value, scales = metrics.ms_ssim(a, b)
        assert value[0] == pytest.approx(_ms_ssim_numpy(a[0], b[0], scales), abs=1e-12)
        values = metrics.paired_metrics(a, b)  # (SSIM from MS-SSIM's first scale)
        assert values["ms_ssim"][0] == value[0]
        assert values["ssim"][0] == pytest.approx(metrics.ssim(a, b)[0], abs=1e-15)
    small = data.rocket()[:64, :96][None]  # where float32 is exact enough: TF's own value
    noisy = np.clip(small.astype(int) + rng.integers(-20, 21, small.shape), 0, 255)
    weights = np.asarray(metrics.MS_SSIM_WEIGHTS[:3]) / sum(metrics.MS_SSIM_WEIGHTS[:3])
    expected = tf.image.ssim_multiscale(
        tf.cast(small, tf.float32), tf.cast(noisy, tf.float32), 255.0, tuple(weights)
    )
    assert metrics.ms_ssim(small, noisy)[0][0] == pytest.approx(float(expected[0]), abs=1e-5)


def test_ms_ssim_on_small_images_uses_fewer_scales():
    # tf.image.ssim_multiscale itself: five scales need min side >= 161 (ceil halving).
    for side, works in ((161, True), (160, False)):
        x = tf.zeros([1, side, side, 3])
        if works:
            tf.image.ssim_multiscale(x, x, 255.0)
        else:
            with pytest.raises(tf.errors.InvalidArgumentError):
                tf.image.ssim_multiscale(x, x, 255.0)
    assert [metrics.ms_ssim_scales(s, 300) for s in (11, 21, 43, 81, 160, 161)] == [
        1,
        2,
        3,
        4,
        4,
        5,
    ]
    small = data.rocket()[:64, :96][None]
    noisy = np.clip(small.astype(int) + 25, 0, 255).astype(np.uint8)
    value, scales = metrics.ms_ssim(small, small)
    assert scales == 3 and value[0] == pytest.approx(1.0, abs=1e-6)
    assert metrics.ms_ssim(small, noisy)[0][0] < 1.0
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ms_ssim(small[:, :10], small[:, :10])


def test_paired_metrics_rejects_mismatched_shapes(photos):
    a, b = photos
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(a, b[:, :-1])


def _closed_form_fid(mu1, s1, mu2, s2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) with symmetric square roots (eigh)."""
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(s1)
        + np.trace(s2)
        - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    )


def _random_covariance(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_fid_of_two_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    dim = 6
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    s1, s2 = _random_covariance(rng, dim), _random_covariance(rng, dim)
    expected = _closed_form_fid(mu1, s1, mu2, s2)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # Isotropic case by hand: ||dmu||^2 + D (a - b)^2.
    iso = metrics.frechet_distance(mu1, 4 * np.eye(dim), mu2, 9 * np.eye(dim))
    assert iso == pytest.approx(np.sum((mu1 - mu2) ** 2) + dim * (2 - 3) ** 2, rel=1e-9)
    # From samples, the estimate converges to the closed form.
    x = rng.multivariate_normal(mu1, s1, size=40000)
    y = rng.multivariate_normal(mu2, s2, size=40000)
    assert metrics.fid_from_features(x, y) == pytest.approx(expected, rel=0.03)


def test_fid_of_a_set_against_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(500, 32))
    assert abs(metrics.fid_from_features(features, features)) < 1e-6
    few = rng.normal(size=(5, 64))  # rank-deficient covariance: sqrtm needs the guard
    value = metrics.fid_from_features(few, few + rng.normal(0, 0.5, few.shape))
    assert np.isfinite(value) and value > 0
    # ReLU features of 5 images (as Inception's pooled ones): scipy's "Matrix is singular"
    # warning printed a source line under the report; the singular case is handled here.
    relu = np.random.default_rng(0).normal(size=(10, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = metrics.fid_from_features(np.maximum(relu[:5], 0), np.maximum(relu[5:], 0))
    assert np.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.fid_from_features(few[:1], few)


def test_inception_score_known_cases():
    uniform = np.full((40, 10), 0.1)
    assert metrics.inception_score(probabilities=uniform, splits=4) == pytest.approx((1.0, 0.0))
    assert metrics.inception_score(logits=np.zeros((40, 10)))[0] == pytest.approx(1.0)
    # Confident and evenly spread over K classes: IS = K in every split.
    one_hot = np.eye(8)[np.tile(np.arange(8), 5)]
    mean, std = metrics.inception_score(probabilities=one_hot, splits=5)
    assert mean == pytest.approx(8.0) and std == pytest.approx(0.0, abs=1e-9)
    # Confident but always the same class: no diversity, IS = 1.
    assert metrics.inception_score(probabilities=np.eye(8)[[3] * 20])[0] == pytest.approx(1.0)
    logits = np.random.default_rng(3).normal(0, 3, size=(30, 8))
    assert 1.0 < metrics.inception_score(logits=logits, splits=3)[0] < 8.0


def small_feature_model(size=32, seed=0):
    """A randomly initialised stand-in for InceptionV3: (16-d features, 10 logits)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input([size, size, 3])
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(10)(features)
    return keras.Model(inputs, [features, logits], name="small")


def test_feature_extraction_and_fid_with_a_small_network(photos):
    model = small_feature_model()
    a, b = photos
    images = np.concatenate([a, a[:, ::-1], a[:, :, ::-1]])
    noisy = np.concatenate([b, b[:, ::-1], b[:, :, ::-1]])
    features, logits = metrics.extract_features(model, images)
    assert features.shape == (6, 16) and logits.shape == (6, 10)
    again, _ = metrics.extract_features(model, images)
    np.testing.assert_array_equal(features, again)
    assert metrics.model_input_size(model) == (32, 32)
    assert abs(metrics.fid_from_features(features, again)) < 1e-6
    other, _ = metrics.extract_features(model, noisy)
    assert metrics.fid_from_features(features, other) > 1e-4
    # A generator's [-1, 1] output and [0, 1] floats were divided by 127.5 again (the
    # network saw black): FID 3.9e-4 of a set against itself, unsaid.
    for scaled, scale in ((images / 127.5 - 1, "[-1, 1]"), (images / 255, "[0, 1]")):
        with pytest.raises(ValueError, match=re.escape(f"as images in {scale}")):
            metrics.extract_features(model, scaled.astype(np.float32))
    floats, _ = metrics.extract_features(model, images.astype(np.float32))
    np.testing.assert_array_equal(floats, features)


def test_inception_feature_model_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="no InceptionV3 weights at"):
        metrics.inception_model(tmp_path / "missing.h5")
    base = keras.applications.InceptionV3(weights=None)  # random: never downloads
    model = metrics.features_and_logits(base)
    image = data.astronaut()[::4, ::4][None]
    features, logits = metrics.extract_features(model, image)
    assert features.shape == (1, 2048) and logits.shape == (1, 1000)
    probabilities = base(metrics.feature_inputs(image, (299, 299))).numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probabilities, atol=1e-6)


def test_l1_in_the_hole_needs_a_one_channel_mask():
    """An RGB mask counted each hole pixel three times (a third of the L1); a [B, H, W]
    mask failed with a deep "Incompatible shapes"."""
    a = np.zeros((1, 8, 8, 3), np.uint8)
    b = np.full((1, 8, 8, 3), 51, np.uint8)
    mask = np.zeros((1, 8, 8, 1), np.uint8)
    mask[0, 2:4, 2:4] = 1
    np.testing.assert_allclose(metrics.l1(a, b, mask), [20.0])
    for bad in (np.repeat(mask, 3, axis=-1), mask[..., 0]):
        with pytest.raises(ValueError, match=r"mask must be \[B, H, W, 1\]"):
            metrics.l1(a, b, bad)


def test_images_off_the_uint8_scale_are_refused_by_name(photos):
    """[-1, 1] images (the models') scored PSNR 68.4 dB, L1 0.03 and SSIM 0.9998 where
    their uint8 versions score 26.3 dB, 3.84 and 0.985, without a word; so did [0, 1]."""
    a, b = photos
    signed = (a / 127.5 - 1.0, b / 127.5 - 1.0)
    unit = (a / 255.0, b / 255.0)
    for metric in (metrics.l1, metrics.psnr, metrics.ssim, metrics.relative_mae):
        for pair in (signed, unit):
            with pytest.raises(ValueError, match=r"uint8 scale \(0..255\); the first image"):
                metric(*pair)
    with pytest.raises(ValueError, match="the second image holds values from -1"):
        metrics.paired_metrics(a, signed[1])
    # 16-bit images (uint16, int32, floats on 0..65535) scored PSNR -19.8 dB and L1 774
    # where their 8-bit versions score 28.4 dB and 3.0.
    wide = a.astype(np.uint16) * 257
    for image in (wide, wide.astype(np.int32), wide.astype(np.float64)):
        for metric in (metrics.l1, metrics.psnr, metrics.ssim):
            with pytest.raises(ValueError, match=r"the second image holds values up to 6\d+"):
                metric(a, image)
    np.testing.assert_allclose(metrics.psnr(a.astype(np.uint16), b), metrics.psnr(a, b))
    sharpened = a.astype(np.int32)
    sharpened[:, :2, :2] = 256  # (a filter's overshoot, as floats are taken)
    assert np.isfinite(metrics.psnr(sharpened, b)).all()
    # floats on the uint8 scale (a bicubic resize's overshoot too) and whole-number dark
    # images are taken as before
    np.testing.assert_allclose(metrics.psnr(a.astype(np.float32), b), metrics.psnr(a, b))
    overshoot = a.astype(np.float64) * 1.1 - 12.0  # -12 .. 268.5
    assert np.isfinite(metrics.psnr(overshoot, b)).all()
    dark = np.minimum(a, 1).astype(np.float64)
    assert np.isfinite(metrics.l1(dark, np.zeros_like(dark))).all()
    mask = np.zeros(a.shape[:3] + (1,))
    mask[:, 10:50, 20:60] = 1
    np.testing.assert_allclose(metrics.l1(a, b, mask.tolist()), metrics.l1(a, b, mask))
    with pytest.raises(ValueError, match=r"expected \[N >= 1, K\] predictions"):
        metrics.inception_score(logits=np.zeros(10))
