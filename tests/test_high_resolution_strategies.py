"""Photos of any size: the crop / resize / auto strategies (penet_tf.high_resolution)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from penet_tf import Generator, high_resolution
from penet_tf.high_resolution import (
    PhotoStrategy,
    graph_hole_groups,
    hole_boxes,
    hole_boxes_near,
    hole_groups,
    inpaint_photo,
    region_pieces,
    region_plan,
    serve_photos,
)
from penet_tf.inference import composite_uint8


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(3)
    model = Generator(base_channels=4, kernel_init="he_normal")
    model.build()
    return model


def photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    smooth = np.stack([x * 0.5, y * 0.7, (x + y) * 0.3], -1) % 256
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def test_crop_equals_the_model_on_the_crop_pasted_back(generator):
    image = photo(320, 400)
    mask = np.zeros((320, 400), np.uint8)
    mask[100:140, 150:190] = 1
    mask[120, 195] = 1  # a second component, merged with the first (margin)
    # Window 104 x 110 (box + 2 * 32), 4 photo pixels per cell: no resampling; the region
    # is 128 x 128 (cells rounded to 16), centred on the window.
    assert region_plan((100, 150, 140, 196), 320, 400, 256, 32) == (56, 109, 128, 128, 4)
    region = image[56:184, 109:237]
    expected = image.copy()
    inpainted = composite_uint8(generator, region[None], mask[None, 56:184, 109:237, None])
    expected[56:184, 109:237] = inpainted[0].numpy()
    for aggregation in (False, True):  # at full resolution the residual is 0
        strategy = PhotoStrategy("crop", margin=32, residual_aggregation=aggregation)
        got = inpaint_photo(generator, image, mask, strategy)
        np.testing.assert_array_equal(got, expected)
    assert (got[mask > 0] != image[mask > 0]).any()


def test_crop_resamples_large_windows_to_the_model_size(generator):
    image = photo(300, 400, seed=1)
    mask = np.zeros((300, 400), np.uint8)
    mask[120:200, 150:260] = 255
    strategy = PhotoStrategy("crop", model_size=64, margin=40, residual_aggregation=False)
    top, left, rows, cols, tile = region_plan((120, 150, 200, 260), 300, 400, 64, 40)
    assert (rows, cols, tile) == (192, 192, 12)  # window 160 x 190: 12 px per cell
    region = image[top : top + rows, left : left + cols].astype(np.float32) / 127.5 - 1
    hole = (mask[top : top + rows, left : left + cols] > 0).astype(np.float32)[None, ..., None]
    small = tf.image.resize(region[None], [64, 64], method="area")
    small_hole = tf.cast(tf.image.resize(hole, [64, 64], method="area") > 0, tf.float32)
    output, _ = generator(small, small_hole)
    back = tf.image.resize(output, [rows, cols], method="bilinear")[0].numpy()
    back = np.clip(np.round((back + 1) * 127.5), 0, 255).astype(np.uint8)
    expected = image.copy()
    inside = mask > 0
    expected[top : top + rows, left : left + cols][inside[top : top + rows, left : left + cols]] = (
        back[inside[top : top + rows, left : left + cols]]
    )
    np.testing.assert_array_equal(inpaint_photo(generator, image, mask, strategy), expected)


def test_groups_merge_only_when_their_margins_overlap():
    mask = np.zeros((400, 600), bool)
    mask[50:60, 50:60] = True
    mask[50:60, 100:110] = True  # 40 px apart: merged with margin 32
    mask[300:310, 500:510] = True  # far: its own group
    mask[60, 60] = True  # diagonal neighbour: the same component as the first
    boxes = hole_boxes(mask)
    assert sorted(boxes) == [(50, 50, 61, 61), (50, 100, 60, 110), (300, 500, 310, 510)]
    assert hole_groups(boxes, margin=32) == [(50, 50, 61, 110), (300, 500, 310, 510)]
    assert hole_groups(boxes, margin=10) == sorted(boxes)
    assert len(hole_groups(boxes, margin=300)) == 1


def _groups_pair_by_pair(boxes, margin):
    """Merging a near pair and starting over (the reference: any order, same groups)."""
    groups = [tuple(box) for box in boxes]

    def near(a, b):
        return (
            max(a[0], b[0]) < min(a[2], b[2]) + 2 * margin
            and max(a[1], b[1]) < min(a[3], b[3]) + 2 * margin
        )

    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if near(groups[i], groups[j]):
                    a, b = groups[i], groups.pop(j)
                    groups[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    merged = True
                    break
            if merged:
                break
    return sorted(groups)


def test_groups_are_those_of_merging_pair_by_pair_and_fast_for_dust():
    rng = np.random.default_rng(4)
    for _ in range(200):
        count, margin = int(rng.integers(1, 30)), int(rng.integers(0, 60))
        tops, lefts = rng.integers(0, 500, count), rng.integers(0, 700, count)
        sizes = rng.integers(1, 50, (count, 2))
        boxes = [(t, x, t + h, x + w) for t, x, (h, w) in zip(tops, lefts, sizes, strict=True)]
        assert hole_groups(boxes, margin) == _groups_pair_by_pair(boxes, margin)
    # 2000 dust specks on a 12-MP photo, margin 16: took 125 s pair by pair; well under 1 s.
    rows, cols = rng.integers(0, 3000, 2000), rng.integers(0, 4000, 2000)
    specks = [(y, x, y + 1, x + 1) for y, x in zip(rows, cols, strict=True)]
    assert 1000 < len(hole_groups(specks, 16)) < 2000


def test_a_speckled_mask_is_merged_by_its_pixels_first_into_the_same_groups():
    """50,000 specks on 12 MP took 56 s in hole_groups alone; over MANY_HOLES components
    they are first merged by the hole grown by the margin, into the same groups."""
    rng = np.random.default_rng(2)
    hole = np.zeros((800, 1000), bool)
    hole[rng.integers(0, 800, 1500), rng.integers(0, 1000, 1500)] = True
    for _ in range(30):  # and some blobs
        y, x = rng.integers(0, 780), rng.integers(0, 980)
        hole[y : y + rng.integers(1, 20), x : x + rng.integers(1, 20)] = True
    assert len(hole_boxes(hole)) > 1000
    counts = []
    for margin in (1, 3, 6, 10):
        near = hole_boxes_near(hole, margin)
        assert len(near) < len(hole_boxes(hole))  # merged before hole_groups
        groups = hole_groups(near, margin)
        assert groups == hole_groups(hole_boxes(hole), margin)
        counts.append(len(groups))
    assert counts[0] > 1000 and counts[-1] == 1  # many groups, and one
    assert hole_boxes_near(hole[:100, :100], 6) == hole_boxes(hole[:100, :100])  # few


def test_separate_holes_share_a_call_only_while_small(generator, monkeypatch):
    """12 separate holes through one call took 7.2 GB (0.6 GB a region): regions whose
    inputs are model-size run one per call; smaller ones share calls up to one model-size
    input's pixels (400 specks ran 400 calls of 64^2: 44.6 s). The same pixels either way,
    within a level (batched kernels may sum in another order)."""
    from penet_tf import high_resolution

    image = photo(200, 600, seed=5)
    mask = np.zeros((200, 600), np.uint8)
    for x in (40, 240, 440):
        mask[90:110, x : x + 20] = 1
    calls, original = [], high_resolution.inpaint_regions

    def counted(generator, regions, *args):
        calls.append(regions.shape[0])
        return original(generator, regions, *args)

    monkeypatch.setattr(high_resolution, "inpaint_regions", counted)
    # Each region is 128 x 128 at 4 pixels a cell: a 128^2 input.
    for model_size, expected_calls in ((128, [1, 1, 1]), (256, [3])):
        strategy = PhotoStrategy("crop", model_size=model_size, margin=32)
        calls.clear()
        got = inpaint_photo(generator, image, mask, strategy)
        assert calls == expected_calls
        for x in (40, 240, 440):  # each as the only hole of the photo
            alone = np.zeros_like(mask)
            alone[90:110, x : x + 20] = 1
            expected = inpaint_photo(generator, image, alone, strategy)
            difference = np.abs(got[alone > 0].astype(int) - expected[alone > 0].astype(int))
            assert difference.max() <= 1
    assert high_resolution.regions_per_call(64, 64, 4, 256) == 16  # a speck's region


def test_full_resolution_bands_give_the_whole_region_s_result(generator, monkeypatch):
    """A region is downsampled, upsampled, aggregated and rounded in bands of cell rows
    (a 5-px diagonal stroke across a 24-MP photo, one 4512 x 6016 region, peaked at
    3159 MiB through the CLI with whole-region float copies; 1736 MiB in bands): the same
    pixels up to float rounding (the key cells' sum is added band by band), for both
    transfers, ``resize`` and regions sharing a call."""
    from penet_tf import high_resolution

    image = photo(300, 400, seed=7)
    mask = np.zeros((300, 400), np.uint8)
    for t in range(400):  # a diagonal stroke, and a block
        y, x = t * 299 // 399, t
        mask[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = 1
    mask[40:90, 260:330] = 1
    specks = np.zeros_like(mask)
    specks[[50, 150, 250], [60, 200, 340]] = 1
    bands, original = [], high_resolution._bands

    def recorded(grid_h, row_pixels):
        bands.append(original(grid_h, row_pixels))
        return bands[-1]

    monkeypatch.setattr(high_resolution, "_bands", recorded)
    cases = [
        (mask, PhotoStrategy("crop", model_size=64, margin=40)),
        (mask, PhotoStrategy("crop", model_size=64, margin=40, transfer="overlap")),
        (mask, PhotoStrategy("resize", model_size=128)),
        (specks, PhotoStrategy("crop", model_size=256, margin=0)),  # 3 regions, one call
    ]
    for hole, strategy in cases:
        results = []
        for band_pixels in (1 << 40, 1):  # one band; bands of one cell row
            monkeypatch.setattr(high_resolution, "BAND_PIXELS", band_pixels)
            bands.clear()
            results.append(inpaint_photo(generator, image, hole, strategy))
            assert len(bands[0]) == (1 if band_pixels > 1 else bands[0][-1][1])
        assert_same_photo(results[1], results[0], image, hole[..., None])
        assert (results[0][hole > 0] != image[hole > 0]).any()


def test_what_is_under_the_hole_does_not_reach_the_result(generator, monkeypatch):
    """The residual aggregation took the known pixels' detail against a downsample that
    averaged the hole's own pixels in: painting the hole white changed the residual the
    attention pastes into the hole (up to 104/255 next to a 300^2 hole; a random thin
    network's near-uniform attention then moves the result by less than a level)."""
    from penet_tf import high_resolution

    residuals, original = [], high_resolution.key_values

    def recorded(residual, *args):  # the known pixels' residual of a band of key cells
        residuals.append(residual.numpy())
        return original(residual, *args)

    monkeypatch.setattr(high_resolution, "key_values", recorded)
    image = photo(300, 400, seed=6)
    mask = np.zeros((300, 400), np.uint8)
    mask[110:210, 140:270] = 1
    painted = np.where(mask[..., None] > 0, np.uint8(255), image)
    for strategy in (PhotoStrategy("crop", model_size=64, margin=40), PhotoStrategy("resize")):
        results = []
        for one in (image, painted):
            residuals.clear()
            results.append(inpaint_photo(generator, one, mask, strategy))
            if len(results) == 1:
                first = residuals[:]
        np.testing.assert_array_equal(results[0], results[1])
        assert max(np.abs(r).max() for r in first) > 0.1  # there is detail to paste
        assert len(first) == len(residuals)
        for one, two in zip(first, residuals, strict=True):
            np.testing.assert_array_equal(one, two)


def test_regions_at_the_borders_and_photos_smaller_than_the_region(generator):
    image = photo(100, 150, seed=2)
    mask = np.zeros((100, 150), np.uint8)
    mask[:20, 130:] = 1  # the top-right corner
    assert region_plan((0, 130, 20, 150), 100, 150, 256, 32) == (0, 22, 128, 128, 4)
    assert region_plan((0, 130, 20, 150), 100, 150, 256, 128) == (0, 0, 128, 192, 4)
    # Margin 128: the region (128 x 192) is larger than the photo, mirrored past its edges.
    strategy = PhotoStrategy("crop", margin=128)
    got = inpaint_photo(generator, image, mask, strategy)
    ys = np.r_[0:100, 98:70:-1]
    xs = np.r_[0:150, 148:106:-1]
    region = image[np.ix_(ys, xs)]
    region_mask = mask[np.ix_(ys, xs)]
    inpainted = composite_uint8(generator, region[None], region_mask[None, ..., None])
    expected = np.where(mask[..., None] > 0, inpainted[0].numpy()[:100, :150], image)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[mask == 0], image[mask == 0])


def test_auto_runs_full_up_to_the_trigger(generator):
    image = photo(96, 130, seed=3)
    mask = np.zeros((96, 130, 1), np.uint8)
    mask[30:60, 40:90] = 1
    full = composite_uint8(generator, image[None], mask[None])[0].numpy()
    auto = PhotoStrategy()  # trigger 512
    assert auto.resolve(96, 130) == "full" and auto.resolve(600, 100) == "crop"
    np.testing.assert_array_equal(inpaint_photo(generator, image, mask, auto), full)
    np.testing.assert_array_equal(
        inpaint_photo(generator, image, mask, PhotoStrategy("full")), full
    )
    small_trigger = PhotoStrategy(trigger=100, margin=16)
    assert not np.array_equal(inpaint_photo(generator, image, mask, small_trigger), full)


@pytest.mark.parametrize("aggregation", [False, True])
def test_resize_pastes_hole_pixels_only(generator, aggregation):
    image = photo(210, 330, seed=4)
    mask = np.zeros((210, 330), np.uint8)
    mask[80:150, 100:200] = 1
    mask[10:20, 300:320] = 1
    strategy = PhotoStrategy("resize", model_size=64, residual_aggregation=aggregation)
    got = inpaint_photo(generator, image, mask, strategy)
    np.testing.assert_array_equal(got[mask == 0], image[mask == 0])
    assert (got[mask > 0] != image[mask > 0]).mean() > 0.5


def test_graph_hole_groups_are_the_library_s():
    """The served graph's groups (cells, label propagation, pairwise merging in TF ops)
    equal ``hole_groups(hole_boxes(...))`` on boxes, strokes, specks and blobs."""
    rng = np.random.default_rng(11)
    groups = {
        margin: tf.function(
            lambda h, m=margin: graph_hole_groups(h, m),
            input_signature=[tf.TensorSpec([None, None], tf.bool)],
        )
        for margin in (0, 1, 16, 40)
    }
    for trial in range(24):
        height, width = (int(v) for v in rng.integers(1, 240, 2))
        hole = np.zeros((height, width), bool)
        if trial % 3 == 0:  # specks
            hole = rng.random((height, width)) < rng.choice([0.001, 0.01, 0.05])
        elif trial % 3 == 1:  # rectangles
            for _ in range(int(rng.integers(0, 6))):
                y, x = rng.integers(0, height), rng.integers(0, width)
                hole[y : y + rng.integers(1, 60), x : x + rng.integers(1, 60)] = True
        else:  # a random walk: a winding stroke
            y, x = rng.integers(0, height), rng.integers(0, width)
            for dy, dx in rng.integers(-1, 2, (400, 2)):
                y, x = np.clip(y + dy, 0, height - 1), np.clip(x + dx, 0, width - 1)
                hole[y, x] = True
        for margin, graph in groups.items():
            got = [tuple(box) for box in graph(tf.constant(hole)).numpy().tolist()]
            assert got == hole_groups(hole_boxes(hole), margin), (trial, margin)
    # A 1-px stroke spiralling in (one component, a long path through the cells: labels
    # lowered one hop per round took 8 s at 1000 x 750; hooking takes a few rounds).
    spiral = np.zeros((120, 90), bool)
    top, left, bottom, right = 0, 0, 120, 90
    while bottom - top > 6 and right - left > 6:
        spiral[top, left:right] = spiral[top:bottom, right - 1] = True
        spiral[bottom - 1, left:right] = spiral[top + 3 : bottom, left] = True
        spiral[top + 3, left : right - 3] = True
        top, left, bottom, right = top + 3, left + 3, bottom - 3, right - 3
    for margin, graph in groups.items():
        got = [tuple(box) for box in graph(tf.constant(spiral)).numpy().tolist()]
        assert got == hole_groups(hole_boxes(spiral), margin), margin


@pytest.mark.parametrize(
    "strategy",
    [
        PhotoStrategy("crop", model_size=64, margin=24),
        PhotoStrategy("crop", model_size=64, margin=0, transfer="overlap"),
        PhotoStrategy("resize", model_size=128),
    ],
    ids=["crop", "crop-margin-0", "resize"],
)
def test_the_served_graph_plans_one_region_per_hole_group_as_the_library(generator, strategy):
    """Two holes far apart are two regions in the library and the CLI; the graph planned
    one around their union box (more shrunk: up to 120 levels off on a 700 x 560 photo)."""
    image = photo(300, 420, seed=5)
    far, near = np.zeros((300, 420, 1), np.uint8), np.zeros((300, 420, 1), np.uint8)
    far[20:60, 30:70] = 255
    far[220:280, 330:400] = 255
    near[100:180, 300:400] = 255
    near[150:160, 250:260] = 255  # merged with the first: one group
    specks = (np.random.default_rng(9).random((300, 420, 1)) < 1e-4).astype(np.uint8) * 255
    served = tf.function(lambda i, m: serve_photos(generator, i, m, strategy))
    for mask in (far, near, specks):
        got = served(tf.constant(image[None]), tf.constant(mask[None]))[0].numpy()
        assert_same_photo(got, inpaint_photo(generator, image, mask, strategy), image, mask)
        assert (got[mask[..., 0] > 0] != image[mask[..., 0] > 0]).mean() > 0.5


def test_the_served_graph_refuses_more_hole_groups_than_it_plans(monkeypatch):
    monkeypatch.setattr(high_resolution, "MAX_GRAPH_GROUPS", 3)
    hole = np.zeros((100, 200), bool)
    hole[10, 10:190:40] = True  # 5 specks 40 pixels apart: 5 groups at margin 8
    groups = tf.function(lambda h: graph_hole_groups(h, 8))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="more than 3 clusters of holes to merge at margin 8"
    ):
        groups(tf.constant(hole))
    hole[10, 100:] = False  # 3 groups: planned
    assert groups(tf.constant(hole)).numpy().tolist() == [list(g) for g in hole_groups(
        hole_boxes(hole), 8)]  # fmt: skip
    # The grid's cell count is int32: past 2^31 cells (margin 0, 2^31 pixels) it wrapped.
    monkeypatch.setattr(high_resolution, "MAX_GRID_CELLS", 100 * 200 - 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="too many pixels to group"):
        tf.function(lambda h: graph_hole_groups(h, 0))(tf.constant(hole))


@pytest.mark.parametrize(
    "strategy",
    [PhotoStrategy("crop", model_size=64, margin=16), PhotoStrategy("resize", model_size=64)],
    ids=["crop", "resize"],
)
def test_the_served_graph_cuts_thin_panoramas_as_the_library(generator, strategy):
    """A thin photo's region is mirrored to 16 attention cells on its short side: the
    graph ran a 40 x 600 strip's full-width scratch as one 608 x 608 region (a 2 x 20000
    photo: 23 s, 7.7 GB) or refused it over its bound, where the library cuts it into
    pieces (19 here) blended across the cuts; it now cuts and blends them too."""
    strip = photo(40, 600, seed=7)
    scratch = np.zeros((40, 600, 1), np.uint8)
    scratch[18:22] = 255
    scratch[5:9, 300:360] = 255  # a second stroke, its own pieces near the first's cuts
    assert len(region_pieces((5, 0, 22, 600), scratch[..., 0] > 0, 64, 16)) > 2
    served = tf.function(
        lambda i, m: serve_photos(generator, i, m, strategy, max_region_pixels=50_000)
    )
    got = served(tf.constant(strip[None]), tf.constant(scratch[None]))[0].numpy()
    assert_same_photo(got, inpaint_photo(generator, strip, scratch, strategy), strip, scratch)


def test_the_served_graph_refuses_a_region_over_its_bound_before_gathering_it(generator):
    image, mask = photo(300, 420, seed=5), np.zeros((300, 420, 1), np.uint8)
    mask[100:180, 300:400] = 255  # a 256^2-input region: 65,536 pixels at least
    strategy = PhotoStrategy("crop")
    served = tf.function(
        lambda i, m: serve_photos(generator, i, m, strategy, max_region_pixels=60_000)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="crop region would exceed 60000"):
        served(tf.constant(image[None]), tf.constant(mask[None]))


def test_a_thin_panorama_is_cut_into_regions_that_fit_its_short_side():
    """A region is mirrored past a thin photo's short side up to 16 cells of the tile its
    long side sets: a full-width scratch across a 200 x 16000 strip needed 4000 x 16000
    (7.1 GB); cut along the long side, 28 regions of 208 x 832."""
    hole = np.zeros((200, 16000), bool)
    hole[90:110] = True
    hole[150, 7000:7100] = True  # a second component inside the same group
    box = (90, 0, 151, 16000)
    assert region_plan(box, 200, 16000, 256, 128)[2:] == (4000, 16000, 250)
    for mask, group in ((hole, box), (hole.T, (0, 90, 16000, 151))):
        pieces = region_pieces(group, mask)
        assert len(pieces) == 28
        plans = {region_plan(p, *mask.shape, 256, 128)[2:] for p in pieces}
        assert plans == ({(208, 832, 13)} if mask is hole else {(832, 208, 13)})
        covered = np.zeros(mask.shape, int)
        for y0, x0, y1, x1 in pieces:
            covered[y0:y1, x0:x1] += mask[y0:y1, x0:x1]
        np.testing.assert_array_equal(covered, mask)  # every hole pixel in one piece
    resize = region_pieces((0, 0, 200, 16000), hole, 256, 0, tight=False)
    assert {region_plan(p, 200, 16000, 256, 0)[2:] for p in resize} == {(208, 832, 13)}
    assert all(p[0] == 0 and p[2] == 200 for p in resize)  # the whole height as context
    # An ordinary photo, a small one and a slightly mirrored one stay one region.
    square = np.zeros((300, 400), bool)
    square[100:140, 150:190] = True
    assert region_pieces((100, 150, 140, 190), square) == [(100, 150, 140, 190)]
    assert region_pieces((5, 0, 6, 20), np.ones((20, 20), bool)) == [(5, 0, 6, 20)]
    assert len(region_pieces((500, 0, 501, 5000), np.ones((1000, 5000), bool))) == 1
    # A margin long against the short side: the pieces' windows (and regions) grow back
    # to the uncut one's (margin 2048: 14 regions of 752 x 3008); the group stays whole.
    strip = np.zeros((100, 3000), bool)
    strip[50] = True
    for margin in (512, 2048):
        assert region_pieces((50, 0, 51, 3000), strip, 256, margin) == [(50, 0, 51, 3000)]


@pytest.mark.parametrize("name", ["crop", "resize"])
def test_thin_photos_run_in_regions_near_their_size(generator, monkeypatch, name):
    from penet_tf import high_resolution

    shapes, original = [], high_resolution.inpaint_regions

    def recorded(generator, regions, *args):
        shapes.extend([regions.shape[1:3]] * regions.shape[0])
        return original(generator, regions, *args)

    monkeypatch.setattr(high_resolution, "inpaint_regions", recorded)
    strip = photo(40, 3000, seed=8)
    scratch = np.zeros((40, 3000), np.uint8)
    scratch[18:21, 5:2990] = 1
    for image, mask in ((strip, scratch), (strip.transpose(1, 0, 2).copy(), scratch.T)):
        got = inpaint_photo(generator, image, mask, PhotoStrategy(name))
        np.testing.assert_array_equal(got[mask == 0], image[mask == 0])
        assert (got[mask > 0] != image[mask > 0]).mean() > 0.5
    # Before: one 752 x 3008 region (crop) or 752 x 3008 (resize), mostly mirror.
    assert max(rows * cols for rows, cols in shapes) <= 96 * 384
    assert len(shapes) == (2 * 24 if name == "crop" else 2 * 12)


def assert_same_photo(got, expected, image, mask):
    """Known pixels bit-identical; hole pixels equal up to a rare 1-step rounding
    difference (graph and eager kernels may sum in a different order)."""
    known = mask[..., 0] == 0
    np.testing.assert_array_equal(got[known], image[known])
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_bad_strategies_and_inputs_are_refused(generator):
    with pytest.raises(ValueError, match="strategy"):
        PhotoStrategy("tiles")
    with pytest.raises(ValueError, match="multiple of 64"):
        PhotoStrategy(model_size=300)
    with pytest.raises(ValueError, match="margin"):
        PhotoStrategy(margin=-1)
    with pytest.raises(ValueError, match="margin must be 0 to 65536"):
        PhotoStrategy(margin=10**11)  # overflowed the served graph's int32 plan
    with pytest.raises(ValueError, match="trigger must be 1 to 65536"):
        PhotoStrategy(trigger=0)
    with pytest.raises(ValueError, match="uint8"):
        inpaint_photo(generator, np.zeros((8, 8, 3), np.float32), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="mask"):
        inpaint_photo(generator, np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9)))
    image = photo(40, 50)
    np.testing.assert_array_equal(
        inpaint_photo(generator, image, np.zeros((40, 50)), PhotoStrategy("crop")), image
    )
    # an empty photo came back as it was (every other path refuses it)
    with pytest.raises(ValueError, match="height and width must be at least 1"):
        inpaint_photo(generator, np.zeros((0, 8, 3), np.uint8), np.zeros((0, 8)))


@pytest.mark.parametrize("name", ["full", "crop", "resize"])
def test_inpaint_photo_takes_holes_by_the_mask_rule(generator, name):
    """Any nonzero value was a hole in inpaint_photo: a soft edge's faint pixels (here 60)
    were inpainted, where the CLIs, the SavedModel and the client keep them."""
    image = photo(90, 120, seed=6)
    soft = np.zeros((90, 120), np.uint8)
    soft[30:60, 40:80] = 255
    soft[28:30, 40:80] = 60  # faint: known by the rule
    soft[60:62, 40:80] = 130  # at least 128: a hole
    strategy = PhotoStrategy(name, model_size=64, margin=16)
    got = inpaint_photo(generator, image, soft, strategy)
    holes = (soft >= 128).astype(np.uint8)
    np.testing.assert_array_equal(got, inpaint_photo(generator, image, holes, strategy))
    np.testing.assert_array_equal(got[28:30], image[28:30])
    # a 0/1 mask's 1s, and a bool mask, are holes
    np.testing.assert_array_equal(inpaint_photo(generator, image, holes > 0, strategy), got)
    # integer values as uint8; a soft [0, 1] float mask made every faintly nonzero pixel a
    # hole (the faint rows above inpainted): refused, as the Inpainter refuses it
    for values in (soft.astype(int), soft.astype(np.float32)):  # 0-255 numbers: the rule
        np.testing.assert_array_equal(inpaint_photo(generator, image, values, strategy), got)
    for wrong, message in (
        (soft / 255.0, "mask is a soft \\[0, 1\\] float mask"),
        (soft.astype(np.int16) - 1, "got int16 with values outside 0-255"),
        (soft.astype(np.uint16) * 2, "got uint16 with values outside 0-255"),
    ):
        with pytest.raises(ValueError, match=message):
            inpaint_photo(generator, image, wrong, strategy)


def test_a_thin_panoramas_pieces_are_blended_across_their_cuts(generator, monkeypatch):
    """The pieces are inpainted apart; across each cut their predictions are blended over
    ``margin`` pixels (linear weights summing to 1), so no jump shows at the cut."""
    from penet_tf import high_resolution

    cut = high_resolution.PieceCut((0, 0, 40, 3000), 1, (0, 750, 1500, 2250, 3000), 64)
    assert cut.zone(750) == (686, 814) and cut.zone(3000) == (2936, 3000)
    left, right = cut.weights(0, 750, 686, 814), cut.weights(1, 750, 686, 814)
    np.testing.assert_allclose(left + right, 1.0, atol=1e-6)
    assert (np.diff(left) < 0).all() and left[0] > 0.99 and right[0] < 0.01
    image = photo(300, 3000, seed=8)
    mask = np.zeros((300, 3000), np.uint8)
    mask[140:150] = 1
    strategy = PhotoStrategy("crop")
    group = hole_groups(hole_boxes(mask), 128)[0]
    cuts, pieces = high_resolution._pieces(group, mask > 0, 256, 128, True)
    assert len(pieces) == 4 and cuts.overlap == 64
    got = inpaint_photo(generator, image, mask, strategy)
    monkeypatch.setattr(high_resolution, "_blend", lambda *args: None)
    apart = inpaint_photo(generator, image, mask, strategy)  # the pieces pasted as they are
    np.testing.assert_array_equal(got[mask == 0], image[mask == 0])
    zones = np.zeros(3000, bool)
    for edge in cuts.edges[1:-1]:
        zones[slice(*cuts.zone(edge))] = True
    np.testing.assert_array_equal(got[:, ~zones], apart[:, ~zones])
    jump = np.abs(np.diff(got[140:150].astype(float), axis=1)).mean(axis=(0, 2))
    jump_apart = np.abs(np.diff(apart[140:150].astype(float), axis=1)).mean(axis=(0, 2))
    at_cuts = np.array(cuts.edges[1:-1]) - 1  # between columns edge - 1 and edge
    assert (jump_apart[at_cuts] > 2 * jump[at_cuts]).all()  # 5.2-20.1 levels, 1.0-4.6 blended
    # resize's pieces have no margin to blend over: cut as before.
    resize_cut, _ = high_resolution._pieces((0, 0, 300, 3000), mask > 0, 256, 0, False)
    assert resize_cut.overlap == 0
