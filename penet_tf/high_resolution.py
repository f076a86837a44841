"""Photos of any size through the 256-trained network: the ``full``, ``resize``, ``crop``
and ``auto`` strategies, one implementation used by the CLIs and the SavedModel.

PEN-Net is trained on 256 x 256 images with holes up to 128 x 128. Run over a whole
12-MP photo, the network sees contexts and holes far larger than any in training, and the
exact attention costs side^4 (composited through ``full`` on 2 cores: 17-18 s at 1024^2
with a 512^2 hole, 221-247 s at 2048^2; README Performance). As IOPaint does
for its fixed-size models, the network instead runs on a region around each hole,
resized so that its long side is the model size:

* ``full``: the whole photo, as ``penet_tf.inference.composite_uint8`` (unchanged).
* ``resize``: the whole photo is one region.
* ``crop``: one region per hole group:

  1. groups: the 8-connected components of the mask, merged (their union box) while
     their boxes enlarged by ``margin`` overlap;
  2. the window: a group's box plus ``margin`` on every side, clipped to the photo's size
     and shifted to lie inside it;
  3. the region: the window cut into ``tile x tile`` cells, ``tile`` the fewest photo
     pixels per cell of the network's attention grid (one cell = 4 x 4 network pixels)
     that fit the window's long side into ``model_size`` (at least 4: a window smaller
     than the model size keeps the photo's resolution); the cells per side are rounded
     up to a multiple of 16, so the network input is a multiple of 64 (the network's
     size multiple) without padding: the region is the window enlarged (centred, shifted
     inside the photo, mirrored past the photo's edges only when the photo is smaller);
  4. the region is area-downsampled to the network input (a network pixel is a hole
     when any photo pixel in it is), inpainted, the prediction upsampled back
     (bilinear) and pasted into the group's hole pixels only, one model-size region per
     network call, smaller ones of one size sharing a call up to that size's pixels
     (``regions_per_call``: memory follows one model-size input). A group whose region
     would be more than half mirror (a thin panorama) is first cut along the photo's
     long side (``region_pieces``), and neighbouring pieces are blended across each cut
     (``PieceCut``).

  The SavedModel's signatures plan the same groups, pieces and regions in their graph
  (``graph_hole_groups``, ``_graph_pieces``, ``inpaint_groups_in_graph``), one region
  per network call, and blend the pieces across their cuts as the library does.

* ``auto`` (the default): ``crop`` when the photo's long side exceeds ``trigger``, else
  ``full``.

Known pixels are copied bit for bit by every strategy; with ``residual_aggregation`` the
hole also receives the known pixels' full-resolution detail through at_conv01's attention
(``penet_tf.residual_aggregation``; on by default for ``crop`` and ``resize``).

The defaults, adapted from IOPaint's (trigger 800, margin 128, resize limit 1280 for
networks trained at 512):

* ``model_size=256``: PEN-Net's training size; larger inputs meet contexts it never saw
  and cost side^4 in the attention.
* ``margin=128``: IOPaint's; a 300-pixel hole's region (556 pixels, 576 with the
  rounding) is shrunk 2.25x to the 256 input, so the hole spans about half the input's
  side, as the 128^2 training holes did in 256^2 images: the regime it was trained in.
* ``trigger=512``: twice the training size. Up to 512^2 the full path costs about
  1.5 s and keeps the whole photo as context; larger photos cost side^4 in ``full``.

The web demo (demos/web/crop.js) plans the same groups and windows for its fixed
S x S graph (square regions), and cuts a thin panorama's long group into pieces as
``region_pieces`` does, blended across their cuts (``PieceCut``).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from penet_tf.image_io import binary_mask, mask_array
from penet_tf.inference import (
    composite_uint8,
    float_to_uint8,
    hole_mask,
    reflect_indices,
    uint8_to_float,
)
from penet_tf.models.generator import SIZE_MULTIPLE
from penet_tf.residual_aggregation import (
    TRANSFERS,
    check_transfer,
    detail_rows,
    high_frequency_rows,
    hole_cell_map,
    key_values,
    query_cells,
    upsample_columns,
    upsample_rows,
    value_rows,
)

STRATEGIES = ("auto", "full", "crop", "resize")
# Bound of the strategies' pixel options: the served graph plans regions in int32, where
# a margin of 10^11 overflowed and failed every request.
MAX_PHOTO_SIDE = 65536
CELL = 4  # network pixels per cell of at_conv01's attention grid (its H/4 map)
CELL_MULTIPLE = SIZE_MULTIPLE // CELL  # cells per side are a multiple of this
# Regions inpainted per network call: as many of one size as hold REGIONS_PER_CALL
# model-size inputs' pixels. Memory grows with each region of a call (12 separate holes
# in a 12-MP photo, full-width generator, 256^2 inputs, one call: 7.2 GB peak; 2 per
# call: 1.9 GB; 1: 1.35 GB, as one hole) while batching such regions saves little time
# (3.7-3.8 s against 4.2 s), so model-size inputs run one at a time; small ones (a
# speck's 64^2) share a call, 16 to a 256^2 budget (400 specks, margin 0: 400 calls of a
# 64^2 input took 44.6 s with a thin generator).
REGIONS_PER_CALL = 1


def regions_per_call(rows, cols, tile, model_size):
    """How many ``rows x cols`` regions of ``tile`` pixels per cell share a network call:
    their inputs' pixels within ``REGIONS_PER_CALL`` model-size inputs'."""
    inputs = (rows * CELL // tile) * (cols * CELL // tile)
    return max(1, REGIONS_PER_CALL * model_size * model_size // inputs)


@dataclasses.dataclass(frozen=True)
class PhotoStrategy:
    """How a photo of any size is inpainted (see the module docstring).

    Args:
        name: ``"auto"``, ``"full"``, ``"crop"`` or ``"resize"``.
        model_size: the long side of the network input for ``crop`` and ``resize``
            (a multiple of 64; 256, the training size, by default).
        margin: photo pixels of context around each hole group (``crop``).
        trigger: ``auto`` runs ``crop`` when the photo's long side exceeds this, else
            ``full``.
        residual_aggregation: add the known pixels' full-resolution residual to the
            hole through the attention (``crop`` and ``resize``; ``full`` has no
            resolution to recover).
        transfer: the residual transfer, ``"tiles"`` (HiFill) or ``"overlap"``.

    Example:

    >>> PhotoStrategy().resolve(3000, 4000)
    'crop'
    >>> PhotoStrategy().resolve(400, 300)
    'full'
    """

    name: str = "auto"
    model_size: int = 256
    margin: int = 128
    trigger: int = 512
    residual_aggregation: bool = True
    transfer: str = "tiles"

    def __post_init__(self):
        if self.name not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.name!r}: expected one of {STRATEGIES}.")
        if self.model_size < SIZE_MULTIPLE or self.model_size % SIZE_MULTIPLE:
            raise ValueError(
                f"model_size must be a positive multiple of {SIZE_MULTIPLE}, got {self.model_size}"
            )
        if not 0 <= self.margin <= MAX_PHOTO_SIDE:
            raise ValueError(f"margin must be 0 to {MAX_PHOTO_SIDE}, got {self.margin}")
        if not 1 <= self.trigger <= MAX_PHOTO_SIDE:
            raise ValueError(f"trigger must be 1 to {MAX_PHOTO_SIDE}, got {self.trigger}")
        if self.model_size > MAX_PHOTO_SIDE:
            raise ValueError(f"model_size must be at most {MAX_PHOTO_SIDE}, got {self.model_size}")
        check_transfer(self.transfer)

    def resolve(self, height, width):
        """The strategy a ``height x width`` photo runs: ``full``, ``crop`` or ``resize``."""
        if self.name == "auto":
            return "crop" if max(height, width) > self.trigger else "full"
        return self.name

    def to_config(self):
        return dataclasses.asdict(self)

    def options(self):
        """The command-line options that give this strategy (inpaint, export)."""
        aggregation = (
            "--residual-aggregation" if self.residual_aggregation else "--no-residual-aggregation"
        )
        return (
            f"--strategy {self.name} --model-size {self.model_size} --margin {self.margin} "
            f"--trigger {self.trigger} {aggregation}"
        )

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _is_tensor(*values):
    return any(isinstance(value, (tf.Tensor, tf.Variable)) for value in values)


def _min(a, b):
    return tf.minimum(a, b) if _is_tensor(a, b) else min(a, b)


def _max(a, b):
    return tf.maximum(a, b) if _is_tensor(a, b) else max(a, b)


def _ceil_div(a, b):
    return -(-a // b)


def region_plan(box, height, width, model_size=256, margin=128):
    """The region of one hole group (steps 2-3 of the module docstring).

    Python ints in, Python ints out; int32 scalar tensors in, tensors out (the SavedModel
    plans in its graph with this same function).

    Args:
        box: ``(y0, x0, y1, x1)``, the group's bounding box (end exclusive).
        height, width: the photo's size.

    Returns:
        ``(top, left, rows, cols, tile)``: the region's first photo row and column (its
        rows and columns may run past the photo: they are mirrored), its size, a multiple
        of ``16 * tile`` per side, and the photo pixels per attention cell; the network
        input is ``4 * rows / tile`` x ``4 * cols / tile``.
    """
    y0, x0, y1, x1 = box
    cells = model_size // CELL
    window_h = _min(y1 - y0 + 2 * margin, height)
    window_w = _min(x1 - x0 + 2 * margin, width)
    top = _min(_max(y0 - margin, 0), height - window_h)
    left = _min(_max(x0 - margin, 0), width - window_w)
    tile = _max(CELL, _ceil_div(_max(window_h, window_w), cells))
    rows = _ceil_div(_ceil_div(window_h, tile), CELL_MULTIPLE) * CELL_MULTIPLE * tile
    cols = _ceil_div(_ceil_div(window_w, tile), CELL_MULTIPLE) * CELL_MULTIPLE * tile
    top = _min(_max(top - (rows - window_h) // 2, 0), _max(height - rows, 0))
    left = _min(_max(left - (cols - window_w) // 2, 0), _max(width - cols, 0))
    return top, left, rows, cols, tile


def region_pieces(box, hole, model_size=256, margin=128, tight=True):
    """The boxes a hole group (or ``resize``'s whole photo) is inpainted in: ``[box]``,
    or the box cut along the photo's long side when its region would be mostly mirror.

    A thin photo's region is mirrored past its short side up to 16 attention cells of
    the tile its long side sets: a full-width scratch across a 200 x 16000 strip needed
    a 4000 x 16000 region (7.1 GB). When more than half a region's pixels lie past the
    photo's edges, the box is cut into equal pieces along the long side, each short
    enough that its window (piece + ``2 * margin``) spans at most ``model_size / 4``
    cells of ``ceil(short side / 16)`` pixels: its region's 16 cells across then cover
    the photo's short side, give or take a cell (28 regions of 208 x 832 for that strip).
    The group stays whole when the pieces' regions would hold more pixels than its own
    (a margin long against the short side grows every piece's window back).
    ``inpaint_photo`` blends neighbouring pieces across each cut (``PieceCut``).

    Args:
        box: ``(y0, x0, y1, x1)``, end exclusive.
        hole: bool [H, W], the photo's mask.
        tight: shrink each piece to the bounding box of its hole pixels (``crop``'s
            groups; ``resize`` keeps the photo's full extent as context).

    Returns:
        Boxes that split ``box``'s hole pixels between them, none empty.
    """
    return [piece for piece, _ in _pieces(box, hole, model_size, margin, tight)[1]]


@dataclasses.dataclass(frozen=True)
class PieceCut:
    """A hole group cut into pieces along ``axis`` (1: columns) at ``edges``.

    The pieces are inpainted apart, so their predictions differ where they meet (a
    full-width stroke across a 4000 x 300 photo, random weights: a jump of 5-14 levels
    between the columns at a cut where neighbouring columns differ by 3 at most). Each
    region reaches ``margin`` past its piece, so across every inner edge the two pieces'
    predictions are blended over ``2 * overlap`` pixels, their weights linear ramps that
    sum to 1 (``overlap``: half the margin, at most half the shortest piece; 0, a hard
    cut, for ``resize``'s margin 0).
    """

    group: tuple
    axis: int
    edges: tuple
    overlap: int

    def zone(self, edge):
        """Photo rows (axis 0) or columns ``[first, stop)`` blended across ``edge``."""
        return max(edge - self.overlap, self.edges[0]), min(edge + self.overlap, self.edges[-1])

    def zone_box(self, edge):
        """The box ``(y0, x0, y1, x1)`` blended across ``edge``: the group's box along
        the other axis, ``zone(edge)`` along this one."""
        box = list(self.group)
        box[self.axis], box[self.axis + 2] = self.zone(edge)
        return tuple(box)

    def weights(self, index, edge, first, stop):
        """Piece ``index``'s weights at coordinates ``first .. stop - 1`` near ``edge``."""
        centres = np.arange(first, stop) + 0.5
        if edge == self.edges[index]:  # the piece's first edge: it ramps up
            ramp = centres - (edge - self.overlap)
        else:
            ramp = (edge + self.overlap) - centres
        return np.clip(ramp / (2 * self.overlap), 0.0, 1.0).astype(np.float32)


def _pieces(box, hole, model_size, margin, tight):
    """``(cut, [(piece, index)])``: ``region_pieces``' pieces with the index of the
    ``cut.edges`` interval each came from; ``(None, [(box, 0)])`` for a group left whole."""
    whole = None, [(box, 0)]
    height, width = hole.shape
    _, _, rows, cols, _ = region_plan(box, height, width, model_size, margin)
    if rows * cols <= 2 * min(rows, height) * min(cols, width):
        return whole
    axis = 1 if rows * width > cols * height else 0  # rows mirrored more: cut the columns
    short = height if axis == 1 else width
    window = model_size // CELL * max(CELL, _ceil_div(short, CELL_MULTIPLE))
    length = max(window - 2 * margin, window // 2)
    start, stop = box[axis], box[axis + 2]
    count = _ceil_div(stop - start, length)
    if count < 2:
        return whole  # a photo small on both sides: cutting it would not help
    edges = [start + (stop - start) * i // count for i in range(count + 1)]
    pieces = _cut(box, hole, axis, edges, tight)
    # A margin long against the short side makes every piece's window long again (its
    # tile, and so its mirror, grows back): cut only when the pieces cost fewer pixels.
    cost = sum(
        plan[2] * plan[3]
        for plan in (region_plan(p, height, width, model_size, margin) for p, _ in pieces)
    )
    if cost >= rows * cols:
        return whole
    overlap = min(margin // 2, int(np.diff(edges).min()) // 2)
    return PieceCut(tuple(box), axis, tuple(edges), overlap), pieces


def _cut(box, hole, axis, edges, tight):
    """``box`` cut at ``edges`` along ``axis`` (1: columns): ``[(piece, index)]``, pieces
    without a hole pixel left out, each shrunk to its hole pixels' bounding box with
    ``tight``, ``index`` its interval ``edges[index] .. edges[index + 1]``."""
    pieces = []
    for index, (first, end) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        piece = list(box)
        piece[axis], piece[axis + 2] = first, end
        y0, x0, y1, x1 = piece
        inside = hole[y0:y1, x0:x1]
        if not inside.any():
            continue
        if tight:
            ys, xs = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
            piece = (y0 + ys[0], x0 + xs[0], y0 + ys[-1] + 1, x0 + xs[-1] + 1)
        pieces.append((tuple(int(v) for v in piece), index))
    return pieces


def hole_boxes(mask):
    """Bounding boxes ``(y0, x0, y1, x1)`` of the 8-connected components of a 2-D mask."""
    from scipy import ndimage

    mask = np.asarray(mask) != 0
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(mask.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])  # labelled in the holes' box: 66 -> ~10 ms at 12 MP
    box = mask[y0 : int(rows[-1]) + 1, x0 : int(cols[-1]) + 1]
    labels, _ = ndimage.label(box, structure=np.ones((3, 3), bool))
    return [
        (s[0].start + y0, s[1].start + x0, s[0].stop + y0, s[1].stop + x0)
        for s in ndimage.find_objects(labels)
    ]


# More components than this are first merged by their pixels (``hole_boxes_near``).
MANY_HOLES = 1000


def hole_boxes_near(hole, margin=128):
    """``hole_boxes(hole)``, or, for more than ``MANY_HOLES`` components (a speckled or
    dithered mask), the boxes of the components of the hole grown by ``margin`` (a
    ``2 * margin`` square maximum filter, 8-connected), which ``hole_groups`` merges
    anyway: two pixels whose grown squares meet lie in boxes that ``hole_groups`` joins
    (|dy|, |dx| <= 2 * margin), and merging a pair early ends in the same groups. 50,000
    specks on 12 MP (margin 128, one group) took 56 s in ``hole_groups`` alone."""
    boxes = hole_boxes(hole)
    if len(boxes) <= MANY_HOLES or margin == 0:  # (margin 0: the components themselves)
        return boxes
    from scipy import ndimage

    grown = ndimage.maximum_filter(np.asarray(hole, bool), size=2 * margin)
    labels, _ = ndimage.label(grown, structure=np.ones((3, 3), bool))
    objects = ndimage.find_objects(np.where(hole, labels, 0))
    return [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in objects if s is not None]


def hole_groups(boxes, margin=128):
    """``boxes`` merged (their union) while their ``margin``-enlarged boxes overlap,
    sorted top to bottom (demos/web/crop.js ``holeGroups`` does the same in JavaScript;
    merging only grows boxes, so any order of merging ends in the same groups).

    Each round finds the overlapping pairs by a sweep down the enlarged boxes' rows and
    joins them (union-find), until a round joins none: 1023 dust specks take
    milliseconds where merging a pair at a time and starting over took 5.7 s.
    """
    groups = sorted(tuple(int(v) for v in box) for box in boxes)
    while True:
        parent = list(range(len(groups)))
        # near(a, b): max(a0, b0) < min(a2, b2) + 2 * margin, and the same for columns,
        # i.e. the boxes grown by margin on every side overlap. Sorted by top row, a box
        # meets only the earlier ones whose grown bottom is below its grown top.
        active, joined = [], False
        for i, (y0, x0, _, x1) in enumerate(groups):
            active = [j for j in active if groups[j][2] + 2 * margin > y0]
            for j in active:
                if max(x0, groups[j][1]) < min(x1, groups[j][3]) + 2 * margin:
                    a, b = _root(parent, i), _root(parent, j)
                    if a != b:
                        parent[b] = a
                        joined = True
            active.append(i)
        if not joined:
            return groups
        union = {}
        for i, box in enumerate(groups):
            a = union.setdefault(_root(parent, i), box)
            union[_root(parent, i)] = (
                min(a[0], box[0]),
                min(a[1], box[1]),
                max(a[2], box[2]),
                max(a[3], box[3]),
            )
        groups = sorted(union.values())


def _root(parent, i):
    """The root of ``i`` in the union-find forest ``parent`` (paths halved on the way)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def region_indices(first, length, size):
    """Photo rows (or columns) ``first .. first + length - 1``, mirrored past the edge
    (``penet_tf.inference.reflect_indices``); NumPy for ints, TF for tensors."""
    if _is_tensor(first, length, size):
        return reflect_indices(size, first + length)[first:]
    period = max(2 * (size - 1), 1)
    position = np.arange(first, first + length) % period
    return np.where(position < size, position, period - position)


# Photo pixels (of all the call's regions) that inpaint_regions computes at full
# resolution at once: a region is downsampled, upsampled, aggregated and rounded in bands
# of cell rows, so its float copies are a band's, not the region's (a 5-px diagonal
# stroke across a 24-MP photo through the CLI: 1736 MiB peak, 3159 MiB with whole-region
# copies; README "High-resolution photos").
BAND_PIXELS = 1 << 20


def _bands(grid_h, row_pixels):
    """``(first, stop)`` bands of cell rows of at most ``BAND_PIXELS`` photo pixels
    (``row_pixels`` per cell row); in a graph (tensor sizes) one band, the whole region."""
    if _is_tensor(grid_h, row_pixels):
        return [(0, grid_h)]
    step = max(1, BAND_PIXELS // row_pixels)
    return [(first, min(first + step, grid_h)) for first in range(0, grid_h, step)]


def _dims(tensor):
    """The tensor's sizes: Python ints where static, int32 scalars where not."""
    dynamic = tf.shape(tensor)
    return [size if size is not None else dynamic[i] for i, size in enumerate(tensor.shape)]


def inpaint_regions(generator, regions, holes, tile, residual_aggregation=True, transfer="tiles"):
    """Inpaints a batch of same-size regions through the network at a lower resolution.

    Full-resolution work runs in bands of cell rows (``BAND_PIXELS``) when the sizes are
    known (eager), in one band in a graph: the same steps, the same values up to float
    rounding (the key cells' weighted residual is summed band by band: a hole value may
    round to the next level, 3 of 6.3 M in a 2048^2 photo with 4 bands).

    Args:
        generator: a ``penet_tf.Generator``.
        regions: uint8 [B, R, C, 3], R and C multiples of ``16 * tile``.
        holes: [B, R, C, 1] (float or uint8), nonzero = hole.
        tile: photo pixels per attention cell (the network input is R * 4 / tile).
        residual_aggregation: add the aggregated full-resolution residual in the hole.
        transfer: ``"tiles"`` or ``"overlap"``.

    Returns:
        uint8 [B, R, C, 3]: the prediction (rounded) in the hole, ``regions`` elsewhere.
    """
    check_transfer(transfer)
    regions, holes = tf.convert_to_tensor(regions), tf.convert_to_tensor(holes)
    batch, height, width, channels = _dims(regions)
    grid_h, grid_w = height // tile, width // tile
    bands = _bands(grid_h, batch * tile * width)

    def band(tensor, first, stop):  # photo rows [first, stop), clipped to the region
        return tensor[:, _max(first, 0) : _min(stop, height)]

    def known(first, stop):  # 1 on known pixels, float
        return 1.0 - tf.cast(band(holes, first, stop) > 0, tf.float32)

    # The network input, band by band: a cell's tile x tile photo pixels are 4 x 4
    # network pixels, so every area footprint lies inside one band.
    small, small_hole = [], []
    for a, b in bands:
        size = [(b - a) * CELL, grid_w * CELL]
        image = uint8_to_float(band(regions, a * tile, b * tile))
        small.append(tf.image.resize(image, size, method="area"))
        small_hole.append(tf.image.resize(1.0 - known(a * tile, b * tile), size, method="area"))
    small = tf.concat(small, axis=1)
    small_hole = tf.cast(tf.concat(small_hole, axis=1) > 0, tf.float32)
    if residual_aggregation:
        output, _, attention = generator(small, small_hole, return_attention=True)
    else:
        output, _ = generator(small, small_hole)
    output = tf.cast(output, tf.float32)
    output_columns = upsample_columns(output, width)

    if residual_aggregation:
        # The known pixels' detail against the low-resolution composite: hole cells hold
        # the prediction, not the hole's own pixels, which would otherwise reach the
        # known pixels next to the hole through the upsampling (and so the result).
        composite_small = small * (1.0 - small_hole) + output * small_hole
        composite_columns = upsample_columns(composite_small, width)
        cell_map = tf.concat(
            [hole_cell_map(band(holes, a * tile, b * tile), tile) for a, b in bands], axis=0
        )
        queries = query_cells(cell_map, transfer)
        weights = tf.gather(tf.cast(attention, tf.float32), queries, axis=1)  # [B, n, K]
        transferred = 0.0
        for a, b in bands:  # the key cells of each band: their residual, weighted
            lo, hi = value_rows(a, b, tile, transfer)
            first, stop = _max(lo, 0), _min(hi, height)
            detail = high_frequency_rows(
                uint8_to_float(band(regions, lo, hi)), composite_columns, height, first, stop
            )
            residual = tf.pad(
                detail * known(lo, hi), [[0, 0], [first - lo, hi - stop], [0, 0], [0, 0]]
            )  # (0 past the region's edges)
            values = key_values(residual, tile, transfer, grid_w)
            transferred += tf.matmul(weights[:, :, a * grid_w : b * grid_w], values)

    out = []
    for a, b in bands:
        result = upsample_rows(output_columns, height, a * tile, b * tile)
        if residual_aggregation:
            result += detail_rows(transferred, queries, grid_w, tile, channels, transfer, a, b)
        keep = band(regions, a * tile, b * tile)
        out.append(tf.where(band(holes, a * tile, b * tile) > 0, float_to_uint8(result), keep))
    return tf.concat(out, axis=1)


def _stacked(arrays):
    """``np.stack(arrays)``; one array as a view (not a second copy of a 24-MP region)."""
    return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)


def inpaint_photo(generator, image, mask, strategy=PhotoStrategy()):
    """Inpaints one uint8 photo of any size with ``strategy`` (eager; NumPy in and out).

    Args:
        generator: a ``penet_tf.Generator``.
        image: uint8 [H, W, 3].
        mask: [H, W] or [H, W, 1] mask values (uint8, bool or 0 / 1 floats:
            ``penet_tf.image_io.mask_array``), holes by the mask rule of every other path
            (``penet_tf.image_io.MASK_RULE``): at least 128, or the 1s of a mask that
            holds only 0 and 1.
        strategy: a ``PhotoStrategy``.

    Returns:
        uint8 [H, W, 3]: known pixels bit-identical to ``image``.
    """
    image = np.asarray(image)
    mask = mask_array(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < 1:  # (an empty photo came back as it was)
        raise ValueError(f"image height and width must be at least 1, got {image.shape[:2]}")
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"mask {mask.shape} must match the image's height and width {image.shape[:2]}"
        )
    height, width = mask.shape
    name = strategy.resolve(height, width)
    # (any nonzero value was a hole here: a soft edge's faint pixels too, which every
    # other path keeps)
    hole = binary_mask(mask) != 0
    if not hole.any():
        return image.copy()
    if name == "full":
        out = composite_uint8(
            generator, image[None], hole[None, ..., None].astype(np.uint8), composite_only=True
        )
        return out[0].numpy()
    if name == "resize":
        margin = 0
        groups = [_pieces((0, 0, height, width), hole, strategy.model_size, 0, tight=False)]
    else:
        margin = strategy.margin
        groups = [
            _pieces(group, hole, strategy.model_size, margin, tight=True)
            for group in hole_groups(hole_boxes_near(hole, margin), margin)
        ]
    pieces = [(piece, cut, index) for cut, members in groups for piece, index in members]
    plans = [region_plan(p[0], height, width, strategy.model_size, margin) for p in pieces]
    result = image.copy()
    batches = {}
    for piece, plan in zip(pieces, plans, strict=True):
        batches.setdefault((plan[2], plan[3], plan[4]), []).append((piece, plan))
    chunks = [
        (size, members[start : start + count])
        for size, members in batches.items()
        for count in [regions_per_call(*size, strategy.model_size)]
        for start in range(0, len(members), count)
    ]
    shares = {}  # (cut, edge): each neighbouring piece's prediction near the edge
    for (rows, cols, tile), members in chunks:
        regions, holes = [], []
        for _, (top, left, _, _, _) in members:
            ys = region_indices(top, rows, height)
            xs = region_indices(left, cols, width)
            regions.append(image[np.ix_(ys, xs)])
            holes.append(hole[np.ix_(ys, xs)])
        out = inpaint_regions(
            generator,
            _stacked(regions),
            _stacked(holes)[..., None].view(np.uint8),
            tile,
            strategy.residual_aggregation,
            strategy.transfer,
        ).numpy()
        for prediction, ((box, cut, index), (top, left, _, _, _)) in zip(out, members, strict=True):
            y0, x0, y1, x1 = box
            inside = hole[y0:y1, x0:x1]
            patch = prediction[y0 - top : y1 - top, x0 - left : x1 - left]
            result[y0:y1, x0:x1][inside] = patch[inside]
            if cut is not None and cut.overlap:
                for edge in cut.edges[index : index + 2]:
                    if cut.edges[0] < edge < cut.edges[-1]:
                        share = _share(cut, index, edge, prediction, top, left, height, width)
                        if share is not None:
                            shares.setdefault((cut, edge), []).append(share)
    for (cut, edge), zone_shares in shares.items():
        _blend(result, hole, cut, edge, zone_shares)
    return result


def _share(cut, index, edge, prediction, top, left, height, width):
    """``(box, weights, pixels)``: piece ``index``'s prediction (its region's, ``top``,
    ``left`` in the photo) over the part of ``edge``'s blending zone the region covers;
    None where it covers none (a piece whose hole pixels end far from the edge)."""
    box = cut.zone_box(edge)
    y0, x0 = max(box[0], top), max(box[1], left)
    y1 = min(box[2], top + prediction.shape[0], height)
    x1 = min(box[3], left + prediction.shape[1], width)
    if y1 <= y0 or x1 <= x0:
        return None
    first, stop = (y0, y1) if cut.axis == 0 else (x0, x1)
    weights = cut.weights(index, edge, first, stop)
    weights = weights[:, None, None] if cut.axis == 0 else weights[None, :, None]
    pixels = prediction[y0 - top : y1 - top, x0 - left : x1 - left].copy()  # (not the call's)
    return (y0, x0, y1, x1), weights, pixels


def _blend(result, hole, cut, edge, shares):
    """The hole pixels of ``edge``'s zone: the weighted mean of the pieces' predictions."""
    y0, x0, y1, x1 = cut.zone_box(edge)
    total = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    weight = np.zeros((y1 - y0, x1 - x0, 1), np.float32)
    for (a, b, c, d), weights, pixels in shares:
        total[a - y0 : c - y0, b - x0 : d - x0] += weights * pixels
        weight[a - y0 : c - y0, b - x0 : d - x0] += weights
    inside = hole[y0:y1, x0:x1] & (weight[..., 0] > 0)
    mean = np.floor(total[inside] / weight[inside] + 0.5)
    result[y0:y1, x0:x1][inside] = np.clip(mean, 0, 255).astype(np.uint8)


# Hole groups the served graph plans at most: their pairwise merge is a K x K matrix. The
# default margin (128) cannot reach it within the 50-MP photo limit (cells of 257 x 257
# photo pixels: at most 768 groups); a small margin with specks spaced over 2 * margin can
# (the library would run each as its own region: thousands of network calls).
MAX_GRAPH_GROUPS = 4096
# Cells of the graph's grouping grid at most (int32 indices; only margin 0 reaches it, at
# 2^31 pixels, which --max-photo-pixels allows up to 2^40).
MAX_GRID_CELLS = 2**31 - 1


def _shifted(grid, dy, dx, fill):
    """``grid[i + dy, j + dx]`` for every cell ``(i, j)`` of a 2-D tensor (``dy``, ``dx``
    in -1 .. 1), ``fill`` past its edges."""
    padded = tf.pad(grid, [[1, 1], [1, 1]], constant_values=fill)
    shape = tf.shape(grid)
    return padded[1 + dy : 1 + dy + shape[0], 1 + dx : 1 + dx + shape[1]]


def _near(a, b, margin):
    """``hole_groups``' test on boxes ``[..., 4]``: grown by ``margin``, they overlap."""
    return (tf.maximum(a[..., 0], b[..., 0]) < tf.minimum(a[..., 2], b[..., 2]) + 2 * margin) & (
        tf.maximum(a[..., 1], b[..., 1]) < tf.minimum(a[..., 3], b[..., 3]) + 2 * margin
    )


def _shortcut(parent):
    """Every node pointed at its tree's root (``parent[x] <= x``: no cycles)."""

    def body(parent, _):
        jumped = tf.gather(parent, parent)
        return jumped, tf.reduce_any(jumped != parent)

    parent, _ = tf.while_loop(lambda _, changed: changed, body, [parent, tf.constant(True)])
    return parent


def _min_labels(count, step):
    """The connected components of ``count`` nodes as labels: each node's least member.
    ``step(parent)`` gives each node the least ``parent`` among itself and the nodes
    joined to it. Each round every tree's root hooks under the least root next to any of
    its members, and every node then points at its root (hooking and shortcutting, as in
    Shiloach-Vishkin): a few rounds where lowering labels one step at a time took one
    round per hop (a serpentine stroke over 4000 x 3000 at margin 0: 355 s)."""

    def body(parent, _):
        hooked = tf.tensor_scatter_nd_min(parent, parent[:, None], step(parent))
        hooked = _shortcut(hooked)
        return hooked, tf.reduce_any(hooked != parent)

    parent, _ = tf.while_loop(
        lambda _, changed: changed, body, [tf.range(count), tf.constant(True)]
    )
    return parent


def _merged(boxes, labels):
    """The union box ``[K, 4]`` of each label's ``boxes`` (labels any ints)."""
    values, segment = tf.unique(labels)
    count = tf.size(values)
    first = tf.math.unsorted_segment_min(boxes[:, :2], segment, count)
    last = tf.math.unsorted_segment_max(boxes[:, 2:], segment, count)
    return tf.concat([first, last], axis=1)


def graph_hole_groups(hole, margin=128):
    """``hole_groups(hole_boxes(hole), margin)`` in TensorFlow ops, for the served graph:
    int32 ``[K, 4]`` boxes ``(y0, x0, y1, x1)`` sorted as ``hole_groups`` sorts them.

    Any two hole pixels at most ``2 * margin`` apart on both axes end in one group (their
    components' grown boxes overlap), so the photo is cut into cells of ``2 * margin + 1``
    pixels a side (at most the photo's), each cell's hole pixels one box; neighbouring
    cells whose boxes ``hole_groups`` would join (with margin 0: that touch, one
    component) are joined by label propagation over the cell grid; the joined boxes are
    then merged pairwise as ``hole_groups`` merges them until none overlap. Starting
    from boxes that the library's merging would join anyway ends in the same groups.
    More than ``MAX_GRAPH_GROUPS`` boxes to merge are refused (``InvalidArgumentError``).

    Args:
        hole: bool ``[H, W]``.
        margin: a Python int, ``PhotoStrategy.margin``.
    """
    shape = tf.shape(hole)
    height, width = shape[0], shape[1]
    side_h = tf.minimum(2 * margin + 1, height)
    side_w = tf.minimum(2 * margin + 1, width)
    grid_h, grid_w = _ceil_div(height, side_h), _ceil_div(width, side_w)
    cells = tf.debugging.assert_less_equal(  # (counted in int32: it wrapped past 2^31)
        tf.cast(grid_h, tf.int64) * tf.cast(grid_w, tf.int64),
        tf.constant(MAX_GRID_CELLS, tf.int64),
        message=f"the photo has too many pixels to group at margin {margin} (more than "
        f"{MAX_GRID_CELLS} cells of {2 * margin + 1} x {2 * margin + 1}); use an export with "
        "a larger --margin or a lower --max-photo-pixels",
    )
    with tf.control_dependencies([cells]):
        grid_h = tf.identity(grid_h)
    padded = tf.pad(hole, [[0, grid_h * side_h - height], [0, grid_w * side_w - width]])
    cells = tf.reshape(padded, [grid_h, side_h, grid_w, side_w])
    rows = tf.cast(tf.reduce_any(cells, axis=3), tf.int32)  # [grid_h, side_h, grid_w]
    cols = tf.cast(tf.reduce_any(cells, axis=1), tf.int32)  # [grid_h, grid_w, side_w]
    filled = tf.reduce_any(rows > 0, axis=1)  # [grid_h, grid_w]
    y_base = tf.range(grid_h)[:, None] * side_h
    x_base = tf.range(grid_w)[None, :] * side_w
    boxes = tf.stack(
        [
            y_base + tf.argmax(rows, axis=1, output_type=tf.int32),
            x_base + tf.argmax(cols, axis=2, output_type=tf.int32),
            y_base + side_h - tf.argmax(tf.reverse(rows, [1]), axis=1, output_type=tf.int32),
            x_base + side_w - tf.argmax(tf.reverse(cols, [2]), axis=2, output_type=tf.int32),
        ],
        axis=-1,
    )  # [grid_h, grid_w, 4], the box of each cell's hole pixels (filled cells)

    # Cells joined to each of their 8 neighbours.
    directions = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    joins = []
    for dy, dx in directions:
        neighbour = tf.stack([_shifted(boxes[..., k], dy, dx, 0) for k in range(4)], -1)
        join = filled & _shifted(filled, dy, dx, False)
        joins.append(join if margin == 0 else join & _near(boxes, neighbour, margin))

    def step(flat):
        grid = tf.reshape(flat, [grid_h, grid_w])
        for (dy, dx), join in zip(directions, joins, strict=True):
            grid = tf.where(join, tf.minimum(grid, _shifted(grid, dy, dx, tf.int32.max)), grid)
        return tf.reshape(grid, [-1])

    filled_flat = tf.reshape(filled, [-1])
    labels = _min_labels(grid_h * grid_w, step)  # (empty cells join nothing)
    members = tf.where(filled_flat)[:, 0]
    groups = tf.cond(
        tf.size(members) > 0,
        lambda: _merged(tf.gather(tf.reshape(boxes, [-1, 4]), members), tf.gather(labels, members)),
        lambda: tf.zeros([0, 4], tf.int32),
    )
    check = tf.debugging.assert_less_equal(
        tf.shape(groups)[0],
        MAX_GRAPH_GROUPS,
        message=f"the mask has more than {MAX_GRAPH_GROUPS} clusters of holes to merge at "
        f"margin {margin} ("
        + ("holes that do not touch" if margin == 0 else f"holes over {2 * margin} pixels apart")
        + "), the most the served graph merges: join them, or use an export with a larger "
        "--margin or --strategy full",
    )
    with tf.control_dependencies([check]):
        groups = tf.identity(groups)

    def merge(groups, _):  # one round of hole_groups: join every overlapping pair
        near = _near(groups[:, None], groups[None, :], margin)  # [K, K], the diagonal too
        count = tf.shape(groups)[0]
        labels = _min_labels(
            count,
            lambda flat: tf.reduce_min(tf.where(near, flat[None, :], tf.int32.max), axis=1),
        )
        merged = _merged(groups, labels)
        return merged, tf.shape(merged)[0] < count

    groups, _ = tf.while_loop(
        lambda _, joined: joined,
        merge,
        [groups, tf.size(groups) > 0],
        shape_invariants=[tf.TensorShape([None, 4]), tf.TensorShape([])],
    )
    # Sorted as hole_groups sorts: no two groups share a first row and column (they
    # would overlap), so that pair orders them.
    key = tf.cast(groups[:, 0], tf.int64) * (MAX_PHOTO_SIDE + 1) + tf.cast(groups[:, 1], tf.int64)
    return tf.gather(groups, tf.argsort(key))


def _graph_pieces(box, hole, model_size, margin, tight):
    """``_pieces`` in TF ops for one group ``box`` (int32 scalars) of ``hole`` (bool
    [H, W]): ``(pieces [P, 4], cuts [P, 8])``, each piece's box and, for blending across
    its cuts (``PieceCut``), ``(along columns, overlap, first edge, second edge, group
    box)`` with an edge -1 where it is not an inner one (and both -1 without blending)."""
    y0, x0, y1, x1 = box
    shape = tf.shape(hole)
    height, width = shape[0], shape[1]
    wide = lambda value: tf.cast(value, tf.int64)  # noqa: E731 (region sizes overflow int32)
    _, _, rows, cols, _ = region_plan(box, height, width, model_size, margin)
    mirrored = wide(rows) * wide(cols) > 2 * wide(tf.minimum(rows, height)) * wide(
        tf.minimum(cols, width)
    )
    columns = wide(rows) * wide(width) > wide(cols) * wide(height)  # cut along the columns
    short = tf.where(columns, height, width)
    window = model_size // CELL * tf.maximum(CELL, _ceil_div(short, CELL_MULTIPLE))
    length = tf.maximum(window - 2 * margin, window // 2)
    start, stop = tf.where(columns, x0, y0), tf.where(columns, x1, y1)
    count = tf.maximum(_ceil_div(stop - start, length), 1)
    edges = start + tf.cast(wide(stop - start) * wide(tf.range(count + 1)) // wide(count), tf.int32)
    # The group's hole in the cut's frame: [other axis, cut axis].
    inside = hole[y0:y1, x0:x1]
    inside = tf.cond(columns, lambda: inside, lambda: tf.transpose(inside))
    other_first = tf.where(columns, y0, x0)
    along = start + tf.range(stop - start)  # photo coordinates along the cut axis
    interval = tf.searchsorted(edges, along, side="right") - 1
    hit = tf.reduce_any(inside, axis=0)
    if tight:
        across = tf.range(tf.shape(inside)[0])[:, None]
        low = tf.reduce_min(tf.where(inside, across, tf.int32.max), axis=0)  # (max: none)
        high = tf.reduce_max(tf.where(inside, across, -1), axis=0) + 1
        segment = tf.where(hit, interval, count)  # (no hole pixel: a segment left out)
        along_first = tf.math.unsorted_segment_min(along, segment, count + 1)[:count]
        along_stop = tf.math.unsorted_segment_max(along, segment, count + 1)[:count] + 1
        other_lo = tf.math.unsorted_segment_min(low, segment, count + 1)[:count] + other_first
        other_hi = tf.math.unsorted_segment_max(high, segment, count + 1)[:count] + other_first
    else:
        along_first, along_stop = edges[:-1], edges[1:]
        other_lo = tf.fill([count], other_first)
        other_hi = tf.fill([count], tf.where(columns, y1, x1))
    kept = tf.math.unsorted_segment_max(tf.cast(hit, tf.int32), interval, count) > 0
    pieces = tf.where(
        columns,
        tf.stack([other_lo, along_first, other_hi, along_stop], axis=1),
        tf.stack([along_first, other_lo, along_stop, other_hi], axis=1),
    )
    index = tf.boolean_mask(tf.range(count), kept)
    pieces = tf.gather(pieces, index)
    plans = region_plan(tf.unstack(pieces, axis=1), height, width, model_size, margin)
    cost = tf.reduce_sum(wide(plans[2]) * wide(plans[3]))
    whole = ~mirrored | (count < 2) | (cost >= wide(rows) * wide(cols))
    overlap = tf.minimum(margin // 2, tf.reduce_min(edges[1:] - edges[:-1]) // 2)

    def edge(position):  # an inner edge, when blending, else -1
        value = tf.gather(edges, position)
        inner = (position > 0) & (position < count) & (overlap > 0)
        return tf.where(inner, value, -1)

    group = tf.stack([y0, x0, y1, x1])
    cuts = tf.concat(
        [
            tf.stack(
                [
                    tf.fill(tf.shape(index), tf.cast(columns, tf.int32)),
                    tf.fill(tf.shape(index), overlap),
                    edge(index),
                    edge(index + 1),
                ],
                axis=1,
            ),
            tf.tile(group[None], [tf.size(index), 1]),
        ],
        axis=1,
    )
    alone = tf.concat([[1, 0, -1, -1], group], 0)[None]
    return tf.cond(whole, lambda: (group[None], alone), lambda: (pieces, cuts))


def _graph_share(cut, prediction, top, left, height, width, edge):
    """``_share`` for one edge in TF ops: ``(indices [n, 2], weighted [n, 3], weights
    [n, 1])`` of the piece's prediction over the edge's blending zone (empty where the
    edge is -1 or the region does not reach the zone)."""
    columns, overlap, first_edge = cut[0] > 0, cut[1], cut[2]
    zone_first, zone_stop = edge - overlap, edge + overlap
    y0 = tf.maximum(tf.where(columns, cut[4], zone_first), top)
    x0 = tf.maximum(tf.where(columns, zone_first, cut[5]), left)
    y1 = tf.minimum(
        tf.where(columns, cut[6], zone_stop), tf.minimum(top + tf.shape(prediction)[0], height)
    )
    x1 = tf.minimum(
        tf.where(columns, zone_stop, cut[7]), tf.minimum(left + tf.shape(prediction)[1], width)
    )
    y1 = tf.where(edge < 0, y0, tf.maximum(y1, y0))
    x1 = tf.maximum(x1, x0)
    pixels = tf.cast(prediction[y0 - top : y1 - top, x0 - left : x1 - left], tf.float32)
    along_first, along_stop = tf.where(columns, x0, y0), tf.where(columns, x1, y1)
    centres = tf.cast(tf.range(along_first, along_stop), tf.float64) + 0.5
    ramp = tf.where(
        edge == first_edge,  # the piece's first edge: it ramps up
        centres - tf.cast(edge - overlap, tf.float64),
        tf.cast(edge + overlap, tf.float64) - centres,
    )
    ramp = tf.cast(
        tf.clip_by_value(ramp / tf.cast(tf.maximum(2 * overlap, 1), tf.float64), 0.0, 1.0),
        tf.float32,
    )
    size = tf.shape(pixels)[:2]
    weights = tf.cond(
        columns,
        lambda: tf.broadcast_to(ramp[None, :], size),
        lambda: tf.broadcast_to(ramp[:, None], size),
    )[..., None]
    ys, xs = tf.meshgrid(tf.range(y0, y1), tf.range(x0, x1), indexing="ij")
    indices = tf.cast(tf.reshape(tf.stack([ys, xs], -1), [-1, 2]), tf.int64)
    return indices, tf.reshape(weights * pixels, [-1, 3]), tf.reshape(weights, [-1, 1])


def inpaint_groups_in_graph(generator, image, mask, strategy, max_region_pixels=None):
    """``crop`` (or ``resize``) in a graph, for one uint8 photo [H, W, 3] and its mask
    [H, W, 1] (float, 1 = hole), as ``inpaint_photo`` runs it: one region per hole group
    (``graph_hole_groups``; the whole photo for ``resize``), a thin panorama's group cut
    into pieces (``_graph_pieces``) blended across the cuts, one region per network call.
    A region over ``max_region_pixels`` is refused before it is gathered (a bound on a
    request's memory)."""
    hole2d = mask[..., 0] > 0
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    if strategy.name == "resize":
        margin = 0
        groups = tf.reshape(tf.stack([0, 0, height, width]), [1, 4])
    else:
        margin = strategy.margin
        groups = graph_hole_groups(hole2d, margin)
    tight = strategy.name != "resize"

    def plan_group(i, pieces_ta, cuts_ta):
        pieces, cuts = _graph_pieces(
            tf.unstack(groups[i]), hole2d, strategy.model_size, margin, tight
        )
        return i + 1, pieces_ta.write(i, pieces), cuts_ta.write(i, cuts)

    def inpaint_piece(i, pieces, cuts, tas):
        y0, x0, y1, x1 = tf.unstack(pieces[i])
        top, left, rows, cols, tile = region_plan(
            (y0, x0, y1, x1), height, width, strategy.model_size, margin
        )
        if max_region_pixels is not None:
            check = tf.debugging.assert_less_equal(
                tf.cast(rows, tf.int64) * tf.cast(cols, tf.int64),
                tf.constant(max_region_pixels, tf.int64),
                message=f"the photo's {strategy.name} region would exceed {max_region_pixels} "
                "pixels (the export's bound, twice its photo limit); crop the photo, or use "
                "an export with --strategy full",
            )
            with tf.control_dependencies([check]):
                rows = tf.identity(rows)
        ys = region_indices(top, rows, height)
        xs = region_indices(left, cols, width)
        region = tf.gather(tf.gather(image, ys, axis=0), xs, axis=1)
        holes = tf.gather(tf.gather(mask, ys, axis=0), xs, axis=1)
        out = inpaint_regions(
            generator,
            region[None],
            holes[None],
            tile,
            strategy.residual_aggregation,
            strategy.transfer,
        )[0]
        # The piece's hole pixels (its box's), from the region's first occurrence of each.
        inside = tf.where(hole2d[y0:y1, x0:x1])
        patch = out[y0 - top : y1 - top, x0 - left : x1 - left]
        offset = tf.cast(tf.stack([y0, x0]), tf.int64)
        paste_where, paste_pixels, share_where, share_weighted, share_weights = tas
        paste_where = paste_where.write(i, inside + offset)
        paste_pixels = paste_pixels.write(i, tf.gather_nd(patch, inside))
        for k, edge in enumerate((cuts[i, 2], cuts[i, 3])):
            where, weighted, weights = _graph_share(cuts[i], out, top, left, height, width, edge)
            share_where = share_where.write(2 * i + k, where)
            share_weighted = share_weighted.write(2 * i + k, weighted)
            share_weights = share_weights.write(2 * i + k, weights)
        tas = [paste_where, paste_pixels, share_where, share_weighted, share_weights]
        return i + 1, pieces, cuts, tas

    def run():
        count = tf.shape(groups)[0]
        _, pieces_ta, cuts_ta = tf.while_loop(
            lambda i, *_: i < count,
            plan_group,
            [
                tf.constant(0),
                tf.TensorArray(tf.int32, size=count, infer_shape=False),
                tf.TensorArray(tf.int32, size=count, infer_shape=False),
            ],
        )
        pieces = tf.ensure_shape(pieces_ta.concat(), [None, 4])
        cuts = tf.ensure_shape(cuts_ta.concat(), [None, 8])
        total = tf.shape(pieces)[0]
        tas = [
            tf.TensorArray(kind, size=size, infer_shape=False)
            for kind, size in [(tf.int64, total), (tf.uint8, total)]
            + [(kind, 2 * total) for kind in (tf.int64, tf.float32, tf.float32)]
        ]
        _, _, _, tas = tf.while_loop(
            lambda i, *_: i < total, inpaint_piece, [tf.constant(0), pieces, cuts, tas]
        )
        where, pixels, shared, weighted, weights = [
            tf.ensure_shape(ta.concat(), [None, columns])
            for ta, columns in zip(tas, (2, 3, 2, 3, 1), strict=True)
        ]
        result = tf.tensor_scatter_nd_update(image, where, pixels)
        # Across each cut: the weighted mean of the pieces' predictions, in hole pixels.
        where = shared
        flat = where[:, 0] * tf.cast(width, tf.int64) + where[:, 1]
        unique, segment = tf.unique(flat)
        sums = tf.math.unsorted_segment_sum(weighted, segment, tf.size(unique))
        norms = tf.math.unsorted_segment_sum(weights, segment, tf.size(unique))
        places = tf.stack(
            [unique // tf.cast(width, tf.int64), unique % tf.cast(width, tf.int64)], 1
        )
        blend = tf.gather_nd(hole2d, places) & (norms[:, 0] > 0)
        mean = tf.floor(sums / tf.where(norms > 0, norms, 1.0) + 0.5)
        mean = tf.cast(tf.clip_by_value(mean, 0.0, 255.0), tf.uint8)
        return tf.tensor_scatter_nd_update(
            result, tf.boolean_mask(places, blend), tf.boolean_mask(mean, blend)
        )

    return tf.cond(tf.reduce_any(hole2d), run, lambda: tf.identity(image))


def serve_photos(generator, image, mask, strategy, max_region_pixels=None):
    """uint8 [B, H, W, 3] and mask [B, H, W, 1] -> uint8 inpainted, with ``strategy`` in
    the graph (``full`` photos as ``penet_tf.inference.serve``). The mask is binarised by
    the mask rule (``penet_tf.inference.hole_mask``); ``max_region_pixels``: see
    ``inpaint_groups_in_graph``."""
    hole = hole_mask(mask)
    if strategy.name == "full":
        return composite_uint8(generator, image, tf.cast(hole, tf.uint8), composite_only=True)

    def cropped():
        return tf.map_fn(
            lambda pair: inpaint_groups_in_graph(
                generator, pair[0], pair[1], strategy, max_region_pixels
            ),
            (image, hole),
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )

    if strategy.name in ("crop", "resize"):
        return cropped()
    shape = tf.shape(image)
    return tf.cond(
        tf.maximum(shape[1], shape[2]) > strategy.trigger,
        cropped,
        lambda: composite_uint8(generator, image, tf.cast(hole, tf.uint8), composite_only=True),
    )


__all__ = [
    "PhotoStrategy",
    "PieceCut",
    "STRATEGIES",
    "TRANSFERS",
    "graph_hole_groups",
    "hole_boxes",
    "hole_boxes_near",
    "hole_groups",
    "inpaint_photo",
    "inpaint_regions",
    "region_pieces",
    "region_plan",
    "serve_photos",
]
