// Faster slices for TensorFlow.js's WebAssembly backend (4.x).
//
// The backend's Slice and StridedSlice kernels read their input with `readSync`, which
// copies the whole input out of the WebAssembly heap before the slice copies its part
// back in: a slice of a 78 MB attention matrix (PEN-Net's finest attention) moves 78 MB
// more than it needs to, ~0.3 s per slice on a 2-core machine. The kernels registered
// here do the same copies straight between heap views (`typedArrayFromHeap`), for
// stride-1 slices of any rank; every other case (strides, strings) goes to the backend's
// own kernel. Same values, bit for bit (plain copies).
//
// Works on plain objects ({inputs, backend, attrs}) through the kernel registry, so it
// runs in the page (app.js) and in Node (tests/run_model_node.mjs) alike.

const FAST = '__penetFastSlice';

/** Copies x[begin : begin + size] (stride 1, any rank) into a new tensor of `outShape`. */
function copySlice(backend, x, begin, size, outShape) {
  const out = backend.makeOutput(outShape, x.dtype);
  if (size.some((count) => count === 0)) return out;
  // Views after makeOutput: allocating may grow (and so replace) the heap's buffer.
  const source = backend.typedArrayFromHeap(x);
  const target = backend.typedArrayFromHeap(out);
  // Merge each dimension taken whole into its outer neighbour: longer contiguous runs.
  const dims = [];
  for (let axis = 0; axis < x.shape.length; axis += 1) {
    const dim = { size: x.shape[axis], first: begin[axis], count: size[axis] };
    const last = dims[dims.length - 1];
    if (last && dim.first === 0 && dim.count === dim.size) {
      last.first *= dim.size;
      last.count *= dim.size;
      last.size *= dim.size;
    } else if (last && last.count === 1) {
      last.first = last.first * dim.size + dim.first;
      last.count = dim.count;
      last.size *= dim.size;
    } else {
      dims.push(dim);
    }
  }
  if (!dims.length) dims.push({ size: 1, first: 0, count: 1 });
  const inner = dims[dims.length - 1];
  const outer = dims.slice(0, -1);
  const strides = new Array(dims.length).fill(1);
  for (let axis = dims.length - 2; axis >= 0; axis -= 1) {
    strides[axis] = strides[axis + 1] * dims[axis + 1].size;
  }
  const index = outer.map((dim) => dim.first);
  let written = 0;
  for (;;) {
    let offset = inner.first;
    for (let axis = 0; axis < outer.length; axis += 1) offset += index[axis] * strides[axis];
    target.set(source.subarray(offset, offset + inner.count), written);
    written += inner.count;
    let axis = outer.length - 1;
    while (axis >= 0 && ++index[axis] === outer[axis].first + outer[axis].count) {
      index[axis] = outer[axis].first;
      axis -= 1;
    }
    if (axis < 0) break;
  }
  return out;
}

/**
 * Registers the faster Slice and StridedSlice kernels for the 'wasm' backend of `tf`
 * (the @tensorflow/tfjs namespace). Returns false, changing nothing, when the backend's
 * kernels or helpers are not the ones this was written against.
 */
export function installFastSlices(tf) {
  const slice = tf.getKernel('Slice', 'wasm');
  const stridedSlice = tf.getKernel('StridedSlice', 'wasm');
  if (!slice || !stridedSlice || !tf.slice_util) return false;
  if (slice.kernelFunc[FAST]) return true; // already installed
  const usable = (backend, x) =>
    x.dtype !== 'string' &&
    typeof backend.typedArrayFromHeap === 'function' &&
    typeof backend.makeOutput === 'function';

  const fastSlice = (args) => {
    const { inputs, backend, attrs } = args;
    const { x } = inputs;
    if (!usable(backend, x)) return slice.kernelFunc(args);
    const [begin, size] = tf.slice_util.parseSliceParams(x, attrs.begin, attrs.size);
    tf.slice_util.assertParamsValid(x, begin, size);
    return copySlice(backend, x, begin, size, size);
  };
  const fastStridedSlice = (args) => {
    const { inputs, backend, attrs } = args;
    const { x } = inputs;
    if (!usable(backend, x)) return stridedSlice.kernelFunc(args);
    const info = tf.slice_util.sliceInfo(
      x.shape,
      attrs.begin,
      attrs.end,
      attrs.strides,
      attrs.beginMask,
      attrs.endMask,
      attrs.ellipsisMask,
      attrs.newAxisMask,
      attrs.shrinkAxisMask
    );
    if (info.isIdentity || !(info.sliceDim0 || info.isSimpleSlice)) {
      return stridedSlice.kernelFunc(args);
    }
    const size = tf.slice_util.computeOutShape(info.begin, info.end, info.strides);
    return copySlice(backend, x, info.begin, size, info.finalShape);
  };
  fastSlice[FAST] = true;
  fastStridedSlice[FAST] = true;
  for (const [config, kernelFunc] of [
    [slice, fastSlice],
    [stridedSlice, fastStridedSlice],
  ]) {
    tf.unregisterKernel(config.kernelName, 'wasm');
    tf.registerKernel({ ...config, kernelFunc });
  }
  return true;
}
