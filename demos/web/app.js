// PEN-Net inpainting demo: paint a hole over a photo, run the converted TF.js graph model.
//
// Plain ES module, no build step. TensorFlow.js and its wasm backend are the UMD bundles
// loaded by index.html from node_modules (globals `tf` and `tf.wasm`).
//
// The model (written by `python -m penet_tf.convert --to tfjs`) has a fixed input size S:
// image int32 [1, S, S, 3] (0..255), mask int32 [1, S, S, 1] (nonzero = hole) -> the
// composite int32 [1, S, S, 3]: known pixels unchanged, the hole filled by the network.
//
// URL parameters: ?model=URL_OF_model.json (default model/model.json), ?backend=cpu to
// skip wasm. State for tests and debugging is exposed as `window.penetDemo`.

const tf = window.tf;
const params = new URLSearchParams(window.location.search);
const MODEL_URL = params.get('model') || 'model/model.json';
const WASM_DIR = new URL('node_modules/@tensorflow/tfjs-backend-wasm/dist/', window.location.href).href;
const MAX_UNDO = 30;
const BRUSH_COLOR = 'rgb(255, 48, 48)';

const $ = (id) => document.getElementById(id);
const photo = $('photo');
const paint = $('paint');
const result = $('result');
const photoCtx = photo.getContext('2d', { willReadFrequently: true });
const paintCtx = paint.getContext('2d', { willReadFrequently: true });
const resultCtx = result.getContext('2d', { willReadFrequently: true });

/** Everything a test (or a curious user in the console) may want to look at. */
const demo = {
  ready: false, // model loaded, backend up
  backend: null,
  size: 256,
  error: null,
  photo: null, // 'sample' or the file name
  photosLoaded: 0,
  strokes: 0,
  running: false,
  lastRun: null, // {image, mask, output (Uint8Arrays), ms, backend}
  undoDepth: () => undoStack.length,
  /** Base64 of a Uint8Array (keeps page.evaluate results small). */
  base64(bytes) {
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  },
  /** RGBA pixels of the canvas with this id, base64. */
  canvasPixels(id) {
    const canvas = $(id);
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    return demo.base64(new Uint8Array(data.buffer));
  },
  /** The current hole mask (1 = hole), base64, one byte per pixel. */
  maskBase64: () => demo.base64(readMask()),
  /** The last run's inputs and output, base64. */
  exportRun() {
    const run = demo.lastRun;
    if (!run) return null;
    return {
      image: demo.base64(run.image),
      mask: demo.base64(run.mask),
      output: demo.base64(run.output),
      ms: run.ms,
      backend: run.backend,
      size: demo.size,
    };
  },
};
window.penetDemo = demo;

// ---------------------------------------------------------------------- status / progress

function setStatus(text, { progress = null, error = false, done = false } = {}) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
  const bar = $('progress');
  if (progress === null) bar.removeAttribute('value'); // indeterminate
  else bar.value = progress;
  $('loading').classList.toggle('done', done);
}

function fail(message, cause) {
  demo.error = message;
  if (cause) console.error(cause);
  setStatus(message, { error: true, done: true });
}

// ---------------------------------------------------------------------------- model

async function startBackend() {
  if (params.get('backend') !== 'cpu') {
    try {
      tf.wasm.setWasmPaths(WASM_DIR);
      if (await tf.setBackend('wasm')) return 'wasm';
    } catch (error) {
      console.warn('wasm backend unavailable, falling back to cpu', error);
    }
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('no TensorFlow.js backend could start');
  return 'cpu';
}

async function loadModel() {
  setStatus('Starting the TensorFlow.js backend…', { progress: 0 });
  demo.backend = await startBackend();
  await tf.ready();
  setStatus(`Loading the model (${demo.backend})…`, { progress: 0 });
  let model;
  try {
    model = await tf.loadGraphModel(MODEL_URL, {
      onProgress: (fraction) =>
        setStatus(`Loading the model (${demo.backend})… ${Math.round(100 * fraction)} %`, {
          progress: fraction,
        }),
    });
  } catch (error) {
    throw new Error(
      `No model at ${MODEL_URL} (${error.message}). Convert one with ` +
        '`python -m penet_tf.convert --to tfjs ...` and serve it with ' +
        '`python -m penet_tf.demo --model DIR`.'
    );
  }
  const image = model.inputs.find((input) => input.shape && input.shape[3] === 3);
  const mask = model.inputs.find((input) => input.shape && input.shape[3] === 1);
  if (!image || !mask || !image.shape[1] || image.shape[1] !== image.shape[2]) {
    throw new Error('The model does not look like a converted PEN-Net (image + mask inputs).');
  }
  demo.size = image.shape[1];
  demo.inputNames = { image: image.name, mask: mask.name };
  return model;
}

// --------------------------------------------------------------------------- canvases

function resizeCanvases(size) {
  for (const canvas of [photo, paint, result]) {
    canvas.width = size;
    canvas.height = size;
  }
  $('size-note').textContent =
    `Photos are center-cropped to a square and resized to ${size} × ${size} pixels, ` +
    'the fixed input size of this converted model.';
}

function drawSample() {
  // A synthetic scene, so the demo can be tried before opening a photo.
  const s = photo.width;
  const sky = photoCtx.createLinearGradient(0, 0, 0, s);
  sky.addColorStop(0, '#6fa8dc');
  sky.addColorStop(0.6, '#d9ecf7');
  sky.addColorStop(0.6, '#7aa45a');
  sky.addColorStop(1, '#3f6b2e');
  photoCtx.fillStyle = sky;
  photoCtx.fillRect(0, 0, s, s);
  photoCtx.fillStyle = '#f6d55c';
  photoCtx.beginPath();
  photoCtx.arc(0.78 * s, 0.2 * s, 0.09 * s, 0, 2 * Math.PI);
  photoCtx.fill();
  photoCtx.fillStyle = '#a0522d';
  photoCtx.fillRect(0.2 * s, 0.45 * s, 0.25 * s, 0.2 * s);
  photoCtx.fillStyle = '#7b2d26';
  photoCtx.beginPath();
  photoCtx.moveTo(0.17 * s, 0.46 * s);
  photoCtx.lineTo(0.325 * s, 0.33 * s);
  photoCtx.lineTo(0.48 * s, 0.46 * s);
  photoCtx.fill();
  newPhoto('sample');
}

async function openPhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (error) {
    fail(`Cannot read ${file.name} as an image.`, error);
    return;
  }
  const side = Math.min(bitmap.width, bitmap.height);
  const s = photo.width;
  photoCtx.imageSmoothingEnabled = true;
  photoCtx.imageSmoothingQuality = 'high';
  photoCtx.clearRect(0, 0, s, s);
  photoCtx.drawImage(
    bitmap,
    (bitmap.width - side) / 2,
    (bitmap.height - side) / 2,
    side,
    side,
    0,
    0,
    s,
    s
  );
  bitmap.close();
  newPhoto(file.name);
}

function newPhoto(name) {
  demo.photo = name;
  demo.photosLoaded += 1;
  demo.lastRun = null;
  undoStack.length = 0;
  paintCtx.clearRect(0, 0, paint.width, paint.height);
  resultCtx.clearRect(0, 0, result.width, result.height);
  $('result-caption').textContent = 'Result';
  setDownload(null);
  updateButtons();
}

// ---------------------------------------------------------------------------- painting

const undoStack = [];
let stroke = null; // {id, x, y} while a pointer paints

function pushUndo() {
  undoStack.push(paintCtx.getImageData(0, 0, paint.width, paint.height));
  if (undoStack.length > MAX_UNDO) undoStack.shift();
}

function canvasPoint(event) {
  const rect = paint.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * paint.width) / rect.width,
    y: ((event.clientY - rect.top) * paint.height) / rect.height,
  };
}

function brushWidth() {
  return Number($('brush').value);
}

function paintSegment(from, to) {
  paintCtx.strokeStyle = BRUSH_COLOR;
  paintCtx.fillStyle = BRUSH_COLOR;
  paintCtx.lineWidth = brushWidth();
  paintCtx.lineCap = 'round';
  paintCtx.lineJoin = 'round';
  paintCtx.beginPath();
  if (from.x === to.x && from.y === to.y) {
    paintCtx.arc(to.x, to.y, brushWidth() / 2, 0, 2 * Math.PI);
    paintCtx.fill();
  } else {
    paintCtx.moveTo(from.x, from.y);
    paintCtx.lineTo(to.x, to.y);
    paintCtx.stroke();
  }
}

paint.addEventListener('pointerdown', (event) => {
  if (!demo.photo || demo.running || stroke) return;
  event.preventDefault();
  paint.setPointerCapture(event.pointerId);
  pushUndo();
  const point = canvasPoint(event);
  stroke = { id: event.pointerId, ...point };
  paintSegment(point, point);
});

paint.addEventListener('pointermove', (event) => {
  if (!stroke || event.pointerId !== stroke.id) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) {
    const point = canvasPoint(each);
    paintSegment(stroke, point);
    stroke.x = point.x;
    stroke.y = point.y;
  }
});

function endStroke(event) {
  if (!stroke || event.pointerId !== stroke.id) return;
  stroke = null;
  demo.strokes += 1;
  updateButtons();
}
paint.addEventListener('pointerup', endStroke);
paint.addEventListener('pointercancel', endStroke);

function undo() {
  if (!undoStack.length || demo.running) return;
  paintCtx.putImageData(undoStack.pop(), 0, 0);
  updateButtons();
}

function clearPaint() {
  if (demo.running || !hasHole()) return;
  pushUndo();
  paintCtx.clearRect(0, 0, paint.width, paint.height);
  updateButtons();
}

/** The hole mask, one byte per pixel: 1 wherever the brush left any paint. */
function readMask() {
  const rgba = paintCtx.getImageData(0, 0, paint.width, paint.height).data;
  const mask = new Uint8Array(paint.width * paint.height);
  for (let i = 0; i < mask.length; i += 1) mask[i] = rgba[4 * i + 3] > 0 ? 1 : 0;
  return mask;
}

function hasHole() {
  const rgba = paintCtx.getImageData(0, 0, paint.width, paint.height).data;
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i]) return true;
  return false;
}

// ---------------------------------------------------------------------------- inpainting

let model = null;

function readImage() {
  const rgba = photoCtx.getImageData(0, 0, photo.width, photo.height).data;
  const rgb = new Uint8Array(photo.width * photo.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

async function inpaint() {
  if (!model || demo.running) return;
  const mask = readMask();
  if (!mask.some((value) => value)) {
    setStatus('Paint the hole first.', { done: true });
    return;
  }
  demo.running = true;
  updateButtons();
  setStatus(`Inpainting on ${demo.backend}…`);
  await nextFrame(); // let the status paint before the (synchronous) kernels run
  const s = demo.size;
  const image = readImage();
  const start = performance.now();
  try {
    const imageTensor = tf.tensor4d(Int32Array.from(image), [1, s, s, 3], 'int32');
    const maskTensor = tf.tensor4d(Int32Array.from(mask), [1, s, s, 1], 'int32');
    const feeds = { [demo.inputNames.image]: imageTensor, [demo.inputNames.mask]: maskTensor };
    let composite;
    try {
      composite = model.execute(feeds);
    } finally {
      tf.dispose([imageTensor, maskTensor]);
    }
    const values = await composite.data();
    composite.dispose();
    const ms = Math.round(performance.now() - start);
    const pixels = new ImageData(s, s);
    const rgb = new Uint8Array(s * s * 3);
    for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
      rgb[j] = pixels.data[i] = values[j];
      rgb[j + 1] = pixels.data[i + 1] = values[j + 1];
      rgb[j + 2] = pixels.data[i + 2] = values[j + 2];
      pixels.data[i + 3] = 255;
    }
    resultCtx.putImageData(pixels, 0, 0);
    demo.lastRun = { image, mask, output: rgb, ms, backend: demo.backend };
    $('result-caption').textContent = `Result (${ms} ms on ${demo.backend})`;
    setStatus(`Done in ${(ms / 1000).toFixed(1)} s on ${demo.backend}.`, { progress: 1, done: true });
    result.toBlob((blob) => setDownload(blob), 'image/png');
  } catch (error) {
    fail(`Inpainting failed: ${error.message}`, error);
  } finally {
    demo.running = false;
    updateButtons();
  }
}

let downloadUrl = null;
function setDownload(blob) {
  const link = $('download');
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = blob ? URL.createObjectURL(blob) : null;
  if (downloadUrl) link.href = downloadUrl;
  else link.removeAttribute('href');
  link.classList.toggle('disabled', !downloadUrl);
  link.setAttribute('aria-disabled', String(!downloadUrl));
}

function updateButtons() {
  const idle = demo.ready && !demo.running;
  $('inpaint').disabled = !idle || !demo.photo;
  $('undo').disabled = demo.running || !undoStack.length;
  $('clear').disabled = demo.running || !demo.photo;
  $('file').disabled = demo.running;
}

// ---------------------------------------------------------------------------- wiring

$('file').addEventListener('change', (event) => {
  const [file] = event.target.files;
  if (file) openPhoto(file);
  event.target.value = ''; // the same file again still fires `change`
});
$('brush').addEventListener('input', () => {
  $('brush-value').textContent = $('brush').value;
});
$('undo').addEventListener('click', undo);
$('clear').addEventListener('click', clearPaint);
$('inpaint').addEventListener('click', inpaint);
window.addEventListener('keydown', (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === 'z') {
    event.preventDefault();
    undo();
  }
});

async function main() {
  if (!tf || !tf.wasm) {
    fail('TensorFlow.js did not load: run `npm ci` in demos/web (see its README).');
    return;
  }
  try {
    model = await loadModel();
  } catch (error) {
    fail(error.message, error);
    return;
  }
  resizeCanvases(demo.size);
  drawSample();
  demo.ready = true;
  updateButtons();
  setStatus(`Ready: ${demo.size} × ${demo.size} model on ${demo.backend}. Paint a hole.`, {
    progress: 1,
    done: true,
  });
}

main();
