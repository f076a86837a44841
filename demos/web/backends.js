// Which TensorFlow.js backends the page tries, in order, for a model (no DOM: tested in
// node by tests/test_web_demo.py).

// TF.js's WebGL shaders index some tensors through float32 arithmetic, exact up to 2^24
// elements: past that, values come out wrong (the 256 model's attention has 19.6 M).
export const WEBGL_MAX_ELEMENTS = 2 ** 24;

/**
 * The backends to try for ?backend=`requested` ('auto', 'webgl', 'wasm' or 'cpu'):
 * `auto` prefers a hardware GPU (`gpu`), then WebAssembly. WebGL is left out for a model
 * whose largest tensor (`largest`, recorded by penet_tf's converter) is past
 * WEBGL_MAX_ELEMENTS, or unknown: conversions by penet_tf before 2026-12-02 17:00 UTC record none,
 * and were counted as 0 (exact), so a GPU ran the 256 model wrong. Returns
 * {order, note}, the note saying why WebGL was left out (or '').
 */
export function backendOrder(requested, largest, gpu) {
  let order = [requested, 'wasm', 'cpu'];
  if (requested === 'auto') order = gpu ? ['webgl', 'wasm', 'cpu'] : ['wasm', 'cpu'];
  const known = Number.isFinite(largest);
  if (order[0] !== 'webgl' || (known && largest <= WEBGL_MAX_ELEMENTS)) {
    return { order: [...new Set(order)], note: '' };
  }
  const limit = `TF.js's WebGL indexing is exact up to ${WEBGL_MAX_ELEMENTS / 1e6} M`;
  const note = known
    ? `WebGL skipped: this model's largest tensor has ${(largest / 1e6).toFixed(1)} M ` +
      `elements, and ${limit}.`
    : "WebGL skipped: this model's conversion does not record its largest tensor (it " +
      `was converted by penet_tf before 2026-12-02 17:00 UTC), and ${limit} elements: convert it ` +
      'again with `python -m penet_tf.convert --to tfjs` to let a GPU run it.';
  return { order: [...new Set(order.filter((name) => name !== 'webgl'))], note };
}
