"""penet_tf.tfjs_rewrite: the TF.js graph rewrites keep every value.

The index arithmetic is checked against NumPy on many slices and pads; the rewritten
thin model (the one tests/test_convert.py and tests/test_web_demo.py run on TF.js's
wasm and WebGL backends against the SavedModel) is checked for what it must no longer
contain.
"""

import json

import numpy as np
import pytest
from conversion_helpers import converted

from penet_tf import tfjs_rewrite
from penet_tf.tfjs_rewrite import MAX_FAST_RANK, _lowered, _pad_view, _slice_dims


def _strided_slice(x, begin, end, strides, begin_mask=0, end_mask=0, shrink_axis_mask=0):
    """NumPy's reading of a TensorFlow StridedSlice (no ellipsis / new axis)."""
    index = []
    for axis in range(x.ndim):
        if axis >= len(begin):
            index.append(slice(None))
        elif shrink_axis_mask >> axis & 1:
            index.append(begin[axis])
        else:
            first = None if begin_mask >> axis & 1 else begin[axis]
            last = None if end_mask >> axis & 1 else end[axis]
            index.append(slice(first, last, strides[axis]))
    return x[tuple(index)]


SLICES = [
    # (shape, begin, end, strides, begin_mask, end_mask, shrink_axis_mask)
    ((1, 6, 7, 6, 7), (0, 1, 2, 1, 2), (1, 5, 6, 5, 6), (1, 1, 1, 1, 1), 0, 0, 0),  # Gram crop
    ((1, 5, 7, 4, 8), (0, 0, 1, 2), (0, 4, 5, 3), (1, 1, 1, 1), 1, 1, 8),  # a polyphase output
    ((1, 8, 8, 3), (0, 1, 0, 0), (1, 8, 8, 3), (1, 2, 2, 1), 0, 0, 0),  # low[:, 1::2, ::2]
    ((1, 8, 6, 3), (0, 0, 1, 0), (1, 8, 6, 3), (1, 2, 2, 1), 0, 0, 0),
    ((1, 90), (0, 0), (1, 84), (1, 1), 0, 0, 0),  # a prefix
    ((2, 3, 4, 5, 6, 2), (0, 1, 0, 0, 2, 0), (2, 3, 4, 5, 5, 2), (1, 1, 1, 1, 1, 1), 0, 0, 0),
    ((3, 4, 6, 6, 2), (-2, 0, 1, 0, 1), (0, 4, -1, 6, 2), (1, 1, 2, 1, 1), 0, 4, 1),
    ((2, 9, 4, 3, 2), (1, 0, 0, 0, 0), (2, 9, 4, 3, 2), (1, 3, 1, 1, 1), 0, 0, 0),
]


@pytest.mark.parametrize("case", SLICES)
def test_lowered_slice_selects_the_same_elements(case):
    shape, begin, end, strides, begin_mask, end_mask, shrink = case
    x = np.arange(np.prod(shape)).reshape(shape)
    expected = _strided_slice(x, begin, end, strides, begin_mask, end_mask, shrink)
    attr = {"begin_mask": {"i": str(begin_mask)}, "end_mask": {"i": str(end_mask)}}
    attr["shrink_axis_mask"] = {"i": str(shrink)}
    dims = _slice_dims(list(shape), list(begin), list(end), list(strides), attr)
    assert np.prod([count for _, _, count, _ in dims]) == expected.size
    lowered = _lowered(dims)
    view = x.reshape([size for size, _, _ in lowered])
    result = view[tuple(slice(first, first + count) for _, first, count in lowered)]
    np.testing.assert_array_equal(result.reshape(expected.shape), expected)


def test_lowered_gram_crop_and_phase_are_rank_4_or_less():
    for case in SLICES[:5]:
        shape, begin, end, strides, begin_mask, end_mask, shrink = case
        attr = {"begin_mask": {"i": str(begin_mask)}, "end_mask": {"i": str(end_mask)}}
        attr["shrink_axis_mask"] = {"i": str(shrink)}
        lowered = _lowered(_slice_dims(list(shape), list(begin), list(end), list(strides), attr))
        assert len(lowered) <= MAX_FAST_RANK
    prefix = SLICES[4]
    assert _lowered(_slice_dims(*map(list, prefix[:4]), {})) == [(90, 0, 84)]  # contiguous


@pytest.mark.parametrize(
    "shape, paddings",
    [
        ((1, 4, 5, 4, 5), ((0, 0), (1, 0), (2, 1), (1, 1), (2, 1))),  # the attention's pad
        ((2, 3, 4, 5, 6), ((0, 0), (1, 2), (0, 0), (1, 0), (0, 3))),
        ((2, 3, 4, 5, 6), ((1, 0), (1, 2), (2, 1), (1, 0), (0, 3))),  # five padded: two steps
        ((3, 1, 4, 2, 2, 3), ((0, 0), (0, 0), (1, 1), (0, 0), (2, 0), (0, 0))),
    ],
)
def test_pad_view_pads_the_same(shape, paddings):
    x = np.arange(1, np.prod(shape) + 1).reshape(shape)
    expected = np.pad(x, paddings)
    dims = _pad_view([(s, b, a) for s, (b, a) in zip(shape, paddings, strict=True)])
    # As lower_pads does: the inner dimensions first, then the outer ones (two steps
    # when more than four dimensions are padded).
    split = 0 if len(dims) <= MAX_FAST_RANK else len(dims) - (MAX_FAST_RANK - 1)
    current = [size for size, _, _ in dims]
    result = x
    for first, last in [(split, len(dims))] + ([(0, split)] if split else []):
        outer = int(np.prod(current[:first]))
        inner = int(np.prod(current[last:]))
        view = (
            ([outer] if first else []) + current[first:last] + ([inner] if last < len(dims) else [])
        )
        pads = ([(0, 0)] if first else []) + [d[1:] for d in dims[first:last]]
        pads += [(0, 0)] if last < len(dims) else []
        assert len(view) <= MAX_FAST_RANK
        result = np.pad(result.reshape(view), pads)
        for index in range(first, last):
            current[index] += dims[index][1] + dims[index][2]
    np.testing.assert_array_equal(result.reshape(expected.shape), expected)


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory):
    """The thin model as penet_tf.convert writes it (rewritten), and its model.json."""
    out = converted(tmp_path_factory.getbasetemp(), "tfjs")
    return out, json.loads((out / "model.json").read_text())


def test_converted_model_has_no_slow_or_webgl_breaking_ops(rewritten):
    out, model = rewritten
    nodes = model["modelTopology"]["node"]
    ops = {node["op"] for node in nodes}
    assert not ops & {"SpaceToBatchND", "BatchToSpaceND"}
    assert "ClipByValue" in ops  # the attention's max(a, 1e-8), among others
    for node in nodes:
        if node["op"] in tfjs_rewrite._MATMULS:
            assert not node["attr"].get("adj_x", {}).get("b") and not node["attr"].get(
                "adj_y", {}
            ).get("b"), node["name"]
    # Every slice and pad now works on rank <= 4 with stride 1 (shapes from TensorFlow).
    weights = tfjs_rewrite.read_weights(out, model["weightsManifest"])
    shapes = tfjs_rewrite.infer_shapes(model, weights)
    assert shapes is not None
    for node in nodes:
        if node["op"] in ("StridedSlice", "Pad", "PadV2"):
            assert len(shapes[node["input"][0].split(":")[0]][0]) <= MAX_FAST_RANK, node["name"]
        if node["op"] == "StridedSlice":
            assert set(np.ravel(weights[node["input"][3]])) == {1}, node["name"]
    dilated = [
        node
        for node in nodes
        if node["op"] in ("Conv2D", "_FusedConv2D") and "dilations" in node["attr"]
    ]
    rates = {tuple(node["attr"]["dilations"]["list"]["i"]) for node in dilated}
    assert {("1", str(r), str(r), "1") for r in (2, 4, 8)} <= rates
    # Nothing unused is left (TF.js would return it as an extra output).
    used = {name.lstrip("^").split(":")[0] for node in nodes for name in node.get("input", [])}
    assert {node["name"] for node in nodes} - used == {"Identity"}
    assert any(tfjs_rewrite.EXTRA_WEIGHTS in group["paths"] for group in model["weightsManifest"])
    assert (out / tfjs_rewrite.EXTRA_WEIGHTS).is_file()
    # The largest tensor, for the page's choice of backend: at_conv01's padded Gram matrix.
    assert model["userDefinedMetadata"]["penet_tf"]["largest_tensor_elements"] == 4422 * 4423


def test_rewriting_twice_changes_nothing(rewritten, tmp_path):
    out, model = rewritten
    for path in out.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert tfjs_rewrite.rewrite_for_wasm(tmp_path) == {"skipped": "already rewritten"}
    assert json.loads((tmp_path / "model.json").read_text()) == model


def test_unknown_shapes_leave_the_graph_alone(rewritten, tmp_path):
    """A graph TensorFlow cannot import (an op it does not know) is not rewritten."""
    out, model = rewritten
    for path in out.iterdir():
        if path.name != tfjs_rewrite.EXTRA_WEIGHTS:
            (tmp_path / path.name).write_bytes(path.read_bytes())
    model = json.loads(json.dumps(model))
    model["weightsManifest"] = [
        g for g in model["weightsManifest"] if tfjs_rewrite.EXTRA_WEIGHTS not in g["paths"]
    ]
    model["modelTopology"]["node"][-1]["op"] = "NoSuchOpAnywhere"
    (tmp_path / "model.json").write_text(json.dumps(model))
    before = (tmp_path / "model.json").read_text()
    result = tfjs_rewrite.rewrite_for_wasm(tmp_path)
    assert "skipped" in result and (tmp_path / "model.json").read_text() == before
    assert not (tmp_path / tfjs_rewrite.EXTRA_WEIGHTS).exists()


def test_read_weights_dequantizes_as_tfjs_does(tmp_path):
    """Quantized weights (``--quantize float16`` / ``dynamic``) are read back dequantized:
    the rewrites use constants' values (the attention's max(|k|, 1e-4) bound, say)."""
    parts = [
        np.array([3, -1, 7], "<i4").tobytes(),
        np.array(1e-4, "<f2").tobytes(),
        np.array([0, 4, 255], "<u1").tobytes(),
        np.array([0.5, -2.0], "<f4").tobytes(),
    ]
    (tmp_path / "group1-shard1of1.bin").write_bytes(b"".join(parts))
    manifest = [
        {
            "paths": ["group1-shard1of1.bin"],
            "weights": [
                {"name": "ints", "shape": [3], "dtype": "int32"},
                {
                    "name": "half",
                    "shape": [],
                    "dtype": "float32",
                    "quantization": {"dtype": "float16"},
                },
                {
                    "name": "codes",
                    "shape": [3],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "min": -1.0, "scale": 0.5},
                },
                {"name": "floats", "shape": [2], "dtype": "float32"},
            ],
        }
    ]
    weights = tfjs_rewrite.read_weights(tmp_path, manifest)
    np.testing.assert_array_equal(weights["ints"], [3, -1, 7])
    assert weights["half"].dtype == np.float32 and weights["half"] == np.float16(1e-4)
    np.testing.assert_array_equal(weights["codes"], [-1.0, 1.0, 126.5])
    np.testing.assert_array_equal(weights["floats"], [0.5, -2.0])
