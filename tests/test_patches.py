"""The two patch-extraction implementations are bit-identical."""

import numpy as np
import pytest
import tensorflow as tf

from penet_tf.layers.patches import extract_patches


@pytest.mark.parametrize(
    "size,stride,padding,shape",
    [(3, 1, 1, (2, 7, 9, 5)), (1, 1, 0, (1, 4, 6, 3)), (4, 2, 1, (3, 8, 10, 4))],
)
def test_conv_method_is_bit_identical_to_extract_patches(size, stride, padding, shape):
    x = tf.constant(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    a = extract_patches(x, size, stride, padding, method="extract_patches")
    b = extract_patches(x, size, stride, padding, method="conv")
    out = (shape[1] + 2 * padding - size) // stride + 1
    assert a.shape == (
        shape[0],
        out,
        (shape[2] + 2 * padding - size) // stride + 1,
        size * size * shape[3],
    )
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Element order is (row, column, channel) of the zero-padded input.
    padded = np.pad(x.numpy(), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    np.testing.assert_array_equal(a.numpy()[0, 0, 0], padded[0, :size, :size, :].reshape(-1))


def test_conv_method_converts_without_extract_image_patches():
    spec = tf.TensorSpec([1, 8, 8, 4])
    graph = (
        tf.function(lambda x: extract_patches(x, 3, 1, 1, method="conv"))
        .get_concrete_function(spec)
        .graph.as_graph_def()
    )
    ops = {node.op for node in graph.node}
    assert "ExtractImagePatches" not in ops
    assert "DepthwiseConv2dNative" in ops


def test_unknown_method():
    with pytest.raises(ValueError, match="Unknown patch method"):
        extract_patches(tf.zeros([1, 4, 4, 1]), 3, method="im2col")
