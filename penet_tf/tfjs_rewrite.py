"""Rewrites a converted TF.js graph model into ops that TF.js's wasm backend runs fast.

``tensorflowjs_converter`` keeps TensorFlow's ops as they are. Timed op by op with
``tf.profile`` (full-width generator, one 256² inpaint, TF.js 4.22 in headless Chromium
and in Node; benchmarks/web_wasm.py), a few of them cost the wasm backend almost all of
its 26 s, while TensorFlow runs them in milliseconds:

* ``StridedSlice`` of a rank-5 tensor: the backend copies slices of rank <= 4 row by row
  but falls back to a per-element JavaScript loop for rank 5 (about 1 µs per element).
  The attention's Gram-similarity crop ``[1, 66, 67, 66, 67] -> [1, 64, 64, 64, 64]``
  alone took 17 s. Slices with a stride take a per-element C++ path, about 0.5 µs per
  element (the attention's ``low[:, ey::2, ex::2]`` phases were such slices; since
  2026-12-04 they are a reshape and a transpose).
* Every ``StridedSlice`` copies its whole input before copying the output out of it, so
  two slices in a row (the polyphase transfer crops ``[:, :q * k]`` and then
  ``[:, :rows * grid_w]`` of a 78 MB matrix) cost four copies.
* ``BatchMatMulV2`` with ``adj_y`` (or ``adj_x``): the transposed operand is read with a
  stride, about 10x slower than the same product after an explicit ``Transpose`` (the
  Gram product ``[4422, 64] x [64, 4422]``: 1.7 s against 0.25 s).
* ``SpaceToBatchND`` -> convolution -> ``BatchToSpaceND``, TensorFlow's form of a dilated
  convolution (the fuse branches, rates 2, 4, 8): about 1 s of data shuffling, where
  TF.js runs a convolution with ``dilations`` directly.

Each rewrite keeps the values (the matrix products may differ in float summation order):

* ``lower_slices``: a slice that selects one contiguous range of its input's memory
  becomes a slice of the flattened input, composed with an earlier such slice it reads
  through reshapes (one copy instead of two); any other slice of rank > 4 or with a
  stride becomes ``Reshape`` (dimensions split by the stride, size-1 dimensions dropped,
  dimensions the slice takes whole merged) + a stride-1 slice of rank <= 4 + ``Reshape``;
* ``materialize_adjoints``: an adjoint operand becomes ``Transpose`` + the plain product;
* ``fold_space_to_batch_convolutions``: the three ops become one dilated convolution;
* ``clip_scalar_bounds``: ``Maximum``/``Minimum`` with a scalar becomes ``ClipByValue``
  (a vectorised clamp in the wasm backend, 4x faster; equal for finite values).

The rewrites need static shapes: the model.json graph (its constants read back from the
weight shards) is imported into TensorFlow once to infer them. A node whose shapes are
unknown is left as it is, and so is a whole graph TensorFlow cannot import (ops only
TF.js knows, other than the one mapped below). New constants (shapes, permutations,
slice bounds) go into one extra weight file, ``wasm-rewrite-constants.bin``, listed as its
own group in ``weightsManifest``; nodes left without a path to the outputs are removed
(TF.js would return them as extra outputs).
"""

import json
import os

import numpy as np

EXTRA_WEIGHTS = "wasm-rewrite-constants.bin"
MAX_FAST_RANK = 4  # the wasm backend's row-copy slice handles ranks up to 4
_MATMULS = ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
_CONVS = ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
_SAME, _VALID, _NHWC = "U0FNRQ==", "VkFMSUQ=", "TkhXQw=="  # model.json stores bytes base64
_SLICE_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}
_NUMPY = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


def read_weights(model_dir, manifest):
    """Name -> NumPy array for every weight of a graph model, quantized ones dequantized
    as TF.js does (float16 widened; uint8/uint16 as ``q * scale + min``)."""
    arrays = {}
    for group in manifest:
        data = b"".join(_read(os.path.join(model_dir, path)) for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"], dtype=np.int64))
            stored = spec.get("quantization", {}).get("dtype", spec["dtype"])
            if stored not in _BYTES or spec["dtype"] not in _NUMPY:
                raise ValueError(f"weight {spec['name']}: unsupported dtype {spec['dtype']}")
            size = count * _BYTES[stored]
            raw = data[offset : offset + size]
            quantization = spec.get("quantization")
            if quantization is None:
                value = np.frombuffer(raw, _NUMPY[spec["dtype"]])
            elif stored == "float16":
                value = np.frombuffer(raw, "<f2").astype(_NUMPY[spec["dtype"]])
            elif stored in ("uint8", "uint16"):
                codes = np.frombuffer(raw, "<u1" if stored == "uint8" else "<u2")
                value = codes * np.float32(quantization["scale"]) + np.float32(quantization["min"])
                value = value.astype(_NUMPY[spec["dtype"]])
            else:
                raise ValueError(f"weight {spec['name']}: unsupported quantization {quantization}")
            value = value.reshape(spec["shape"])
            arrays[spec["name"]] = value
            offset += size
    return arrays


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def infer_shapes(model, weights):
    """Output shapes of every node of ``model`` (a parsed model.json), by node name.

    Returns ``{name: [shape, ...]}`` (shapes as lists, ``None`` for unknown dimensions),
    or ``None`` when TensorFlow cannot import the graph.
    """
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import op_def_registry

    topology = model["modelTopology"]
    if topology.get("library", {}).get("function"):
        return None  # control flow: PEN-Net's converted graphs have none
    graph_def = graph_pb2.GraphDef()
    json_format.ParseDict({"node": topology["node"]}, graph_def, ignore_unknown_fields=True)
    for node in graph_def.node:
        node.device = ""
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
        elif node.op == "FusedDepthwiseConv2dNative":  # TF.js's fused op: same output shape
            node.op = "DepthwiseConv2dNative"
            del node.input[2:]
            for key in list(node.attr):
                if key not in ("T", "strides", "padding", "dilations", "data_format"):
                    del node.attr[key]
        if op_def_registry.get(node.op) is None:
            return None
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except (ValueError, TypeError, tf.errors.OpError):
        return None
    return {
        operation.name: [
            output.shape.as_list() if output.shape.rank is not None else None
            for output in operation.outputs
        ]
        for operation in graph.get_operations()
    }


def _source(reference):
    """``name`` of a node input ``name``, ``name:k`` or ``^name``."""
    return reference.lstrip("^").split(":")[0]


class _Graph:
    """The nodes of a model.json being rewritten, plus the constants added to it."""

    def __init__(self, model, weights, shapes):
        self.model = model
        self.nodes = model["modelTopology"]["node"]
        self.by_name = {node["name"]: node for node in self.nodes}
        self.weights = weights
        self.shapes = shapes
        self.new_constants = []  # (spec, array)

    def shape(self, tensor):
        """Static shape of an input reference; None if unknown or not fully defined."""
        name, _, index = tensor.lstrip("^").partition(":")
        outputs = self.shapes.get(name)
        if not outputs or outputs[int(index or 0)] is None:
            return None
        shape = outputs[int(index or 0)]
        return None if any(dim is None for dim in shape) else shape

    def constant(self, reference):
        """The value of a Const input, or None."""
        node = self.by_name.get(_source(reference))
        if node is None or node["op"] != "Const":
            return None
        return self.weights.get(node["name"])

    def consumers(self):
        users = {}
        for node in self.nodes:
            for reference in node.get("input", []):
                users.setdefault(_source(reference), []).append(node)
        return users

    def _unique(self, name):
        candidate, index = name, 1
        while candidate in self.by_name:
            candidate, index = f"{name}_{index}", index + 1
        return candidate

    def add_constant(self, name, values, dtype="int32"):
        array = np.asarray(values, _NUMPY[dtype])
        name = self._unique(name)
        dims = {"dim": [{"size": str(d)} for d in array.shape]} if array.shape else {}
        tf_dtype = {"int32": "DT_INT32", "float32": "DT_FLOAT"}[dtype]
        self._add(
            {
                "name": name,
                "op": "Const",
                "attr": {
                    "value": {"tensor": {"dtype": tf_dtype, "tensorShape": dims}},
                    "dtype": {"type": tf_dtype},
                },
            }
        )
        self.new_constants.append(
            ({"name": name, "shape": list(array.shape), "dtype": dtype}, array)
        )
        self.weights[name] = array
        return name

    def add_node(self, name, op, inputs, attr):
        node = {"name": self._unique(name), "op": op, "input": list(inputs), "attr": attr}
        self._add(node)
        return node["name"]

    def _add(self, node):
        self.nodes.append(node)
        self.by_name[node["name"]] = node

    def reshape(self, name, tensor, shape, dtype):
        shape_const = self.add_constant(f"{name}/shape", shape)
        return self.add_node(
            name, "Reshape", [tensor, shape_const], {"T": dtype, "Tshape": {"type": "DT_INT32"}}
        )

    def slice(self, name, tensor, dims, dtype):
        """A stride-1 StridedSlice of ``tensor`` by (size, first, count) per dimension."""
        begin = self.add_constant(f"{name}/begin", [first for _, first, _ in dims])
        end = self.add_constant(f"{name}/end", [first + count for _, first, count in dims])
        strides = self.add_constant(f"{name}/strides", [1] * len(dims))
        masks = {key: {"i": "0"} for key in _SLICE_MASKS}
        return self.add_node(
            name,
            "StridedSlice",
            [tensor, begin, end, strides],
            {"T": dtype, "Index": {"type": "DT_INT32"}, **masks},
        )

    def become_reshape(self, node, tensor, shape):
        """Turns ``node`` into ``Reshape(tensor, shape)`` (its consumers stay unchanged)."""
        dtype = node.get("attr", {}).get("T", {"type": "DT_FLOAT"})
        node["op"] = "Reshape"
        node["input"] = [tensor, self.add_constant(f"{node['name']}/wasm_shape", shape)]
        node["attr"] = {"T": dtype, "Tshape": {"type": "DT_INT32"}}

    def prune(self):
        """Removes the nodes from which no signature output can be reached."""
        outputs = [spec["name"] for spec in self.model["signature"].get("outputs", {}).values()]
        needed, stack = set(), [_source(name) for name in outputs]
        while stack:
            name = stack.pop()
            if name in needed or name not in self.by_name:
                continue
            needed.add(name)
            stack.extend(_source(reference) for reference in self.by_name[name].get("input", []))
        removed = [node["name"] for node in self.nodes if node["name"] not in needed]
        self.nodes[:] = [node for node in self.nodes if node["name"] in needed]
        for name in removed:
            del self.by_name[name]
        return removed


def _slice_dims(shape, begin, end, strides, attr):
    """Per input dimension (size, first index, count, step) of a StridedSlice, or None."""
    masks = {key: int(attr.get(key, {}).get("i", 0)) for key in _SLICE_MASKS}
    if masks["ellipsis_mask"] or masks["new_axis_mask"]:
        return None
    if not (len(begin) == len(end) == len(strides) <= len(shape)):
        return None
    dims = []
    for axis, size in enumerate(shape):
        if axis >= len(begin):  # a shorter spec takes the trailing dimensions whole
            dims.append((size, 0, size, 1))
            continue
        bit, step = 1 << axis, int(strides[axis])
        if step <= 0:
            return None
        if masks["shrink_axis_mask"] & bit:
            first = int(begin[axis]) + (size if begin[axis] < 0 else 0)
            if not 0 <= first < size:
                return None
            dims.append((size, first, 1, 1))
            continue
        first = 0 if masks["begin_mask"] & bit else int(begin[axis])
        last = size if masks["end_mask"] & bit else int(end[axis])
        first = min(max(first + size if first < 0 else first, 0), size)
        last = min(max(last + size if last < 0 else last, 0), size)
        dims.append((size, first, max(0, (last - first + step - 1) // step), step))
    return dims


def _lowered(dims):
    """The same selection as stride-1 (size, first, count) dimensions, as few as possible:
    a strided dimension split into (size / step, step) (None if step does not divide it),
    size-1 dimensions dropped, a dimension merged into its outer neighbour when it is
    taken whole or the outer one is a single index."""
    split = []
    for size, first, count, step in dims:
        if step == 1 or count == 1:
            split.append((size, first, count))
        elif size % step == 0 and first // step + count <= size // step:
            split += [(size // step, first // step, count), (step, first % step, 1)]
        else:
            return None
    dims = [dim for dim in split if dim[0] != 1]
    merged = True
    while merged and len(dims) > 1:
        merged = False
        for i in range(len(dims) - 1):
            (outer, first, count), (inner, inner_first, inner_count) = dims[i], dims[i + 1]
            if inner_first == 0 and inner_count == inner:
                dims[i : i + 2] = [(outer * inner, first * inner, count * inner)]
            elif count == 1:
                dims[i : i + 2] = [(outer * inner, first * inner + inner_first, inner_count)]
            else:
                continue
            merged = True
            break
    return dims or [(1, 0, 1)]


def lower_slices(graph):
    """Rewrites the StridedSlice nodes the wasm backend runs slowly (see the module doc).

    Returns the number of slices rewritten.
    """
    ranges = {}  # slice name -> (source tensor, first, count): one flat range of the source
    rewritten = 0
    for node in list(graph.nodes):
        if node["op"] != "StridedSlice" or len(node["input"]) != 4:
            continue
        source = node["input"][0]
        shape, out_shape = graph.shape(source), graph.shape(node["name"])
        values = [graph.constant(name) for name in node["input"][1:]]
        if shape is None or out_shape is None or any(value is None for value in values):
            continue
        dims = _slice_dims(shape, *(list(np.ravel(v)) for v in values), node.get("attr", {}))
        if dims is None or np.prod([d[2] for d in dims]) != np.prod(out_shape):
            continue
        lowered = _lowered(dims)
        if lowered is None:
            continue
        name, dtype = node["name"], node.get("attr", {}).get("T", {"type": "DT_FLOAT"})
        if len(lowered) == 1:  # one contiguous range of the source's memory
            _, first, count = lowered[0]
            total = int(np.prod(shape))
            earlier = _earlier_range(graph, source, ranges)
            if earlier is None and first == 0 and count == total:
                continue  # the whole input: nothing to copy less
            if earlier is not None:
                source, offset, _ = earlier
                total = int(np.prod(graph.shape(source)))
                first += offset
            ranges[name] = (source, first, count)
            flat = graph.reshape(f"{name}/wasm_flat_input", source, [total], dtype)
            sliced = graph.slice(f"{name}/wasm_flat", flat, [(total, first, count)], dtype)
        elif len(shape) > MAX_FAST_RANK or any(d[3] > 1 and d[2] > 1 for d in dims):
            if len(lowered) > MAX_FAST_RANK:
                continue
            rank = len(lowered)
            view = graph.reshape(
                f"{name}/wasm_rank{rank}_input", source, [d[0] for d in lowered], dtype
            )
            sliced = graph.slice(f"{name}/wasm_rank{rank}", view, lowered, dtype)
        else:
            continue  # already a row-copy slice
        graph.become_reshape(node, sliced, out_shape)
        rewritten += 1
    return rewritten


def _earlier_range(graph, tensor, ranges):
    """(source, first, count) when ``tensor`` is, through reshapes only, a slice of one flat
    range of another tensor (recorded in ``ranges``), else None."""
    name = _source(tensor)
    while True:
        if name in ranges:
            return ranges[name]
        node = graph.by_name.get(name)
        if node is None or node["op"] != "Reshape":
            return None
        name = _source(node["input"][0])


def materialize_adjoints(graph):
    """BatchMatMul with adj_x / adj_y -> Transpose of that operand + a plain product."""
    rewritten = 0
    for node in list(graph.nodes):
        if node["op"] not in _MATMULS:
            continue
        attr = node.setdefault("attr", {})
        changed = False
        for index, key in enumerate(("adj_x", "adj_y")):
            shape = graph.shape(node["input"][index])
            if not attr.get(key, {}).get("b", False) or shape is None or len(shape) < 2:
                continue
            rank = len(shape)
            perm = graph.add_constant(
                f"{node['name']}/wasm_{key}_perm", [*range(rank - 2), rank - 1, rank - 2]
            )
            node["input"][index] = graph.add_node(
                f"{node['name']}/wasm_{key}_transpose",
                "Transpose",
                [node["input"][index], perm],
                {"T": attr.get("T", {"type": "DT_FLOAT"}), "Tperm": {"type": "DT_INT32"}},
            )
            attr[key] = {"b": False}
            changed = True
        rewritten += changed
    return rewritten


def clip_scalar_bounds(graph):
    """Maximum / Minimum of a tensor and a scalar constant -> ClipByValue.

    The wasm backend runs ClipByValue with XNNPACK's vectorised clamp, about 4x faster
    than its broadcasting Maximum (the attention's ``max(a, 1e-8)`` over a 64 MB matrix).
    ``clip(x, c, FLT_MAX) == max(x, c)`` for every finite x (and ``min`` alike); only an
    infinity would become +-FLT_MAX. Returns the number of nodes rewritten.
    """
    largest = float(np.finfo(np.float32).max)
    rewritten = 0
    for node in list(graph.nodes):
        if node["op"] not in ("Maximum", "Minimum") or len(node["input"]) != 2:
            continue
        if node.get("attr", {}).get("T", {}).get("type") != "DT_FLOAT":
            continue
        out_shape = graph.shape(node["name"])
        for index in (0, 1):
            value, other = graph.constant(node["input"][index]), node["input"][1 - index]
            if value is None or np.size(value) != 1 or graph.shape(other) != out_shape:
                continue
            bound = float(np.ravel(value)[0])
            low, high = (bound, largest) if node["op"] == "Maximum" else (-largest, bound)
            name = node["name"]
            node["op"] = "ClipByValue"
            node["input"] = [
                other,
                graph.add_constant(f"{name}/wasm_low", low, "float32"),
                graph.add_constant(f"{name}/wasm_high", high, "float32"),
            ]
            node["attr"] = {"T": {"type": "DT_FLOAT"}}
            rewritten += 1
            break
    return rewritten


def _ints(attr, key, default):
    return [int(i) for i in attr.get(key, {}).get("list", {}).get("i", default)]


def fold_space_to_batch_convolutions(graph):
    """SpaceToBatchND -> convolution -> BatchToSpaceND -> one convolution with dilations.

    Only the exact pattern TensorFlow builds for a SAME dilated convolution: rate r x r, a
    stride-1 VALID convolution in NHWC in between, no crop at the top/left, and paddings
    that make the result a SAME convolution with dilation r. Returns the number folded.
    """
    users = graph.consumers()
    folded = []
    for batch_to_space in list(graph.nodes):
        if batch_to_space["op"] != "BatchToSpaceND":
            continue
        conv = graph.by_name.get(_source(batch_to_space["input"][0]))
        if conv is None or conv["op"] not in _CONVS or len(users.get(conv["name"], [])) != 1:
            continue
        space_to_batch = graph.by_name.get(_source(conv["input"][0]))
        if space_to_batch is None or space_to_batch["op"] != "SpaceToBatchND":
            continue
        if len(users.get(space_to_batch["name"], [])) != 1:
            continue
        values = [
            graph.constant(space_to_batch["input"][1]),
            graph.constant(space_to_batch["input"][2]),
            graph.constant(batch_to_space["input"][1]),
            graph.constant(batch_to_space["input"][2]),
        ]
        kernel = graph.shape(conv["input"][1])
        attr = conv.get("attr", {})
        if any(value is None for value in values) or kernel is None:
            continue
        block, paddings = np.ravel(values[0]), np.reshape(values[1], [-1, 2])
        block_out, crops = np.ravel(values[2]), np.reshape(values[3], [-1, 2])
        if (
            block.shape != (2,)
            or block[0] != block[1]
            or list(block_out) != list(block)
            or attr.get("padding", {}).get("s") != _VALID
            or _ints(attr, "strides", [1] * 4) != [1] * 4
            or _ints(attr, "dilations", [1] * 4) != [1] * 4
            or attr.get("data_format", {}).get("s", _NHWC) != _NHWC
            or crops[:, 0].any()
        ):
            continue
        rate = int(block[0])
        same = True
        for axis in range(2):
            total = (int(kernel[axis]) - 1) * rate
            before, after = int(paddings[axis, 0]), int(paddings[axis, 1] - crops[axis, 1])
            same = same and before == total // 2 and after == total - total // 2
        if not same:
            continue
        # The BatchToSpaceND node becomes the dilated convolution (its consumers stay).
        new_attr = {key: value for key, value in attr.items() if key != "_input_shapes"}
        new_attr["padding"] = {"s": _SAME}
        new_attr["dilations"] = {"list": {"i": ["1", str(rate), str(rate), "1"]}}
        batch_to_space["op"] = conv["op"]
        batch_to_space["input"] = [space_to_batch["input"][0], *conv["input"][1:]]
        batch_to_space["attr"] = new_attr
        folded.append(batch_to_space["name"])
    return len(folded)


def _pad_view(dims):
    """(size, before, after) per dimension -> fewer: unpadded size-1 dimensions dropped,
    an unpadded dimension merged into its outer neighbour (the outer padding then pads
    whole blocks of it)."""
    dims = [dim for dim in dims if dim != (1, 0, 0)]
    merged = []
    for size, before, after in dims:
        if merged and before == after == 0:
            outer, outer_before, outer_after = merged[-1]
            merged[-1] = (outer * size, outer_before * size, outer_after * size)
        else:
            merged.append((size, before, after))
    return merged or [(1, 0, 0)]


def lower_pads(graph):
    """Pad / PadV2 of rank > 4 -> Reshape + pads of rank <= 4 + Reshape.

    TF.js's WebGL backend cannot compile its packed pad shader for rank 5 (the attention
    pads a [1, rows, w, h, w] attention tensor), and rank <= 4 is what its other kernels
    are built for. Zero (constant) padding of some dimensions and then of the others
    equals padding all at once, so a view with more than four padded dimensions is padded
    in two steps. Returns the number of pads rewritten.
    """
    rewritten = 0
    for node in list(graph.nodes):
        if node["op"] not in ("Pad", "PadV2") or len(node["input"]) < 2:
            continue
        shape, out_shape = graph.shape(node["input"][0]), graph.shape(node["name"])
        paddings = graph.constant(node["input"][1])
        if shape is None or out_shape is None or paddings is None or len(shape) <= MAX_FAST_RANK:
            continue
        paddings = np.reshape(paddings, [-1, 2])
        if (paddings < 0).any():
            continue
        dims = _pad_view(
            [(size, int(b), int(a)) for size, (b, a) in zip(shape, paddings, strict=True)]
        )
        # At most two pads: the inner dimensions (below `split`) first, then the outer ones.
        split = 0 if len(dims) <= MAX_FAST_RANK else len(dims) - (MAX_FAST_RANK - 1)
        if split > MAX_FAST_RANK - 1:
            continue
        name, dtype = node["name"], node.get("attr", {}).get("T", {"type": "DT_FLOAT"})
        extra = node["input"][2:]  # PadV2's constant value
        tensor = node["input"][0]
        steps = [(split, len(dims))] if split == 0 else [(split, len(dims)), (0, split)]
        current = [size for size, _, _ in dims]
        for first, last in steps:
            outer = int(np.prod(current[:first], dtype=np.int64))
            inner = int(np.prod(current[last:], dtype=np.int64))
            view = (
                ([outer] if first else [])
                + current[first:last]
                + ([inner] if last < len(dims) else [])
            )
            pads = ([[0, 0]] if first else []) + [list(d[1:]) for d in dims[first:last]]
            pads += [[0, 0]] if last < len(dims) else []
            tensor = graph.reshape(f"{name}/wasm_view{first}", tensor, view, dtype)
            pad_const = graph.add_constant(f"{name}/wasm_paddings{first}", pads)
            tensor = graph.add_node(
                f"{name}/wasm_pad{first}",
                node["op"],
                [tensor, pad_const, *extra],
                {"T": dtype, "Tpaddings": {"type": "DT_INT32"}},
            )
            for index in range(first, last):
                current[index] += dims[index][1] + dims[index][2]
        graph.become_reshape(node, tensor, out_shape)
        rewritten += 1
    return rewritten


def rewrite_for_wasm(model_dir):
    """Applies the rewrites to ``model_dir/model.json`` in place; returns what was done.

    Returns ``{"slices": n, "pads": n, "matmuls": n, "clips": n, "dilated_convolutions": n}``
    (nodes rewritten) and ``largest_tensor_elements``, the size of the graph's largest
    intermediate tensor, also written to model.json's ``userDefinedMetadata.penet_tf``
    (TF.js's ``GraphModel.metadata``: the demo page reads it to choose its backend); or
    ``{"skipped": reason}`` when shapes cannot be inferred (nothing is changed then).
    """
    path = os.path.join(model_dir, "model.json")
    with open(path) as handle:
        model = json.load(handle)
    if any(EXTRA_WEIGHTS in group["paths"] for group in model["weightsManifest"]):
        return {"skipped": "already rewritten"}
    weights = read_weights(model_dir, model["weightsManifest"])
    shapes = infer_shapes(model, weights)
    if shapes is None:
        return {"skipped": "TensorFlow could not import the graph to infer its shapes"}
    graph = _Graph(model, weights, shapes)
    done = {
        "slices": lower_slices(graph),
        "pads": lower_pads(graph),
        "matmuls": materialize_adjoints(graph),
        "clips": clip_scalar_bounds(graph),
        "dilated_convolutions": fold_space_to_batch_convolutions(graph),
    }
    graph.prune()
    # TF.js's WebGL backend indexes some tensors through float32 arithmetic: past 2^24
    # elements its values come out wrong (the page then stays on WebAssembly).
    largest = max(
        (
            int(np.prod(shape, dtype=np.int64))
            for name, outputs in shapes.items()
            if name in graph.by_name
            for shape in outputs
            if shape is not None and None not in shape
        ),
        default=0,
    )
    metadata = model.setdefault("userDefinedMetadata", {})
    metadata["penet_tf"] = {**metadata.get("penet_tf", {}), "largest_tensor_elements": largest}
    done["largest_tensor_elements"] = largest
    constants = [
        (spec, array) for spec, array in graph.new_constants if spec["name"] in graph.by_name
    ]
    if constants:
        with open(os.path.join(model_dir, EXTRA_WEIGHTS), "wb") as handle:
            for _, array in constants:
                handle.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
        model["weightsManifest"].append(
            {"paths": [EXTRA_WEIGHTS], "weights": [spec for spec, _ in constants]}
        )
    with open(path, "w") as handle:
        json.dump(model, handle)
    return done
