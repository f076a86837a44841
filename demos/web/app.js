// PEN-Net inpainting demo: paint a hole over a photo, run the converted TF.js graph model.
//
// Plain ES module, no build step. TensorFlow.js and its wasm backend are the UMD bundles
// loaded by index.html from node_modules (globals `tf` and `tf.wasm`); the crop plan and
// the resampling are in crop.js.
//
// The model (written by `python -m penet_tf.convert --to tfjs`) has a fixed input size S:
// image int32 [1, S, S, 3] (0..255), mask int32 [1, S, S, 1] (nonzero = hole) -> the
// composite int32 [1, S, S, 3]: known pixels unchanged, the hole filled by the network.
// The photo keeps its own size: every painted region is cropped (crop.js), resized to
// S x S, inpainted, resized back, and only its painted pixels are pasted into the photo.
//
// URL parameters: ?model=URL_OF_model.json (default model/model.json);
// ?fastslices=0 keeps TF.js's own wasm slice kernels (wasm_kernels.js, for comparisons);
// ?backend=auto|webgl|wasm|cpu (default auto: WebGL on a hardware GPU that renders
// float32, else WebAssembly, else plain JS); ?threads=N for the wasm backend (default:
// TF.js's, half the logical cores; more than one needs the cross-origin isolation
// headers that penet_tf.demo sends). State for tests and debugging is exposed as
// `window.penetDemo`.

import {
  MARGIN,
  blendCuts,
  hasHole as maskHasHole,
  modelInput,
  pasteBack,
  planRegions,
} from './crop.js';
import { backendOrder } from './backends.js';
import { colourProfile, photoSize, withColourProfile } from './photo_file.js';
import { installFastSlices } from './wasm_kernels.js';

const tf = window.tf;
const params = new URLSearchParams(window.location.search);
const MODEL_URL = params.get('model') || 'model/model.json';
const BACKEND = params.get('backend') || 'auto';
const BACKENDS = ['auto', 'webgl', 'wasm', 'cpu'];
// wasm threads; 0: TF.js's default (half the logical cores, at most 4)
const THREADS = Math.max(0, Math.min(Math.floor(Number(params.get('threads')) || 0, 8)));
const WASM_DIR = new URL('node_modules/@tensorflow/tfjs-backend-wasm/dist/', window.location.href).href;
const MAX_PHOTO_PIXELS = 40e6; // three full-size canvases of 4 bytes per pixel
// The longest canvas side every browser draws (Chromium's is 65535, Firefox's 32767):
// past it a canvas stays blank without an error, and painting it made no mask.
const MAX_PHOTO_SIDE = 32767;
// A photo's header: its size and colour profile (JPEG APP2 and SOF, PNG iCCP, ...).
const HEADER_BYTES = 16 << 20;
const BRUSH_COLOR = 'rgb(255, 48, 48)';
// WebGL renderers that are the CPU in disguise (slower than WebAssembly).
const SOFTWARE_GL = /swiftshader|llvmpipe|softpipe|software|basic render/i;

const $ = (id) => document.getElementById(id);
const photo = $('photo');
const paint = $('paint');
// The paint layer covers the photo canvas exactly: sized from the photo's own box (as
// 100 % of the figure it was up to 1.6 CSS pixels wider on a thin strip, whose height
// layout rounds, and a stroke landed 55 photo pixels off at a 12000 x 100 strip's end).
new ResizeObserver(() => {
  const { width, height } = photo.getBoundingClientRect();
  paint.style.width = `${width}px`;
  paint.style.height = `${height}px`;
}).observe(photo);
const result = $('result');
const photoCtx = photo.getContext('2d', { willReadFrequently: true });
const paintCtx = paint.getContext('2d', { willReadFrequently: true });
const resultCtx = result.getContext('2d', { willReadFrequently: true });

/** Everything a test (or a curious user in the console) may want to look at. */
const demo = {
  ready: false, // model loaded, backend up
  backend: null,
  backendInfo: null, // {threads, simd, fastSlices} for wasm, {renderer} for webgl
  backendNote: null, // why a backend was skipped, when it was
  model: null,
  size: 256,
  error: null, // the last error shown
  fatal: null, // TF.js or the model did not load: nothing can be inpainted
  photo: null, // 'sample' or the file name
  profile: null, // the photo's ICC colour profile (bytes), written into the download
  photoSize: null, // {width, height}
  photosLoaded: 0,
  strokes: 0,
  running: false,
  opening: 0, // the photo pick being decoded (0: none); a newer pick supersedes it
  picks: 0,
  lastRun: null, // {width, height, regions: [{box, window, region, image, mask, output, ms}], ...}
  downloadToken: null, // the run whose result the download link may take
  undoDepth: () => history.length,
  /** Photo pixels per CSS pixel of the painting canvas (the brush is in CSS pixels). */
  scale: () => paint.width / (paint.getBoundingClientRect().width || paint.width),
  brushPixels: () => brushWidth(),
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
  /** The current hole mask (1 = hole), base64, one byte per photo pixel. */
  maskBase64: () => demo.base64(readMask()),
  /** The last run: every region's crop and model input/output (base64). */
  exportRun() {
    const run = demo.lastRun;
    if (!run) return null;
    return {
      ...run,
      regions: run.regions.map((region) => ({
        ...region,
        image: demo.base64(region.image),
        mask: demo.base64(region.mask),
        output: demo.base64(region.output),
      })),
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
  // (after TF.js or the model failed to load, that stays said: a rejected photo's message
  // alone hid it, Inpaint disabled with nothing saying why)
  if (demo.fatal && message !== demo.fatal) message = `${message} ${demo.fatal}`;
  demo.error = message;
  if (cause) console.error(cause);
  setStatus(message, { error: true, done: true });
}

/** An error that leaves the page unable to inpaint (TF.js or the model did not load): it
 * stays on show when a photo is opened (it was replaced by "Paint what should disappear."
 * while Inpaint stayed disabled, with nothing saying why). */
function failForGood(message, cause) {
  demo.fatal = message;
  fail(message, cause);
}

// ---------------------------------------------------------------------------- model

/** The WebGL renderer's name, or null without WebGL 2. */
function webglRenderer() {
  const gl = document.createElement('canvas').getContext('webgl2');
  if (!gl) return null;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const name = gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER);
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return String(name);
}

async function tryBackend(name) {
  try {
    if (name === 'wasm') {
      tf.wasm.setWasmPaths(WASM_DIR);
      if (THREADS) tf.wasm.setThreadsCount(THREADS);
    }
    const started = await withLogicalCores(name === 'wasm' ? 2 * THREADS : 0, async () => {
      if (!(await tf.setBackend(name))) return false;
      await tf.ready();
      return true;
    });
    if (!started) return null;
    if (name === 'wasm') {
      return {
        fastSlices: params.get('fastslices') !== '0' && installFastSlices(tf),
        threads: tf.wasm.getThreadsCount(),
        simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
      };
    }
    if (name === 'webgl') {
      // Half-float textures would round the attention and the image: not this model.
      if (!tf.env().getBool('WEBGL_RENDER_FLOAT32_CAPABLE')) {
        tf.removeBackend('webgl');
        return null;
      }
      return { renderer: webglRenderer() };
    }
    return {};
  } catch (error) {
    console.warn(`the ${name} backend is unavailable`, error);
    return null;
  }
}

/**
 * Runs `start` while navigator.hardwareConcurrency reads `cores` (when larger).
 *
 * TF.js's wasm backend (4.22) takes hardwareConcurrency / 2 threads at most, guessing
 * two logical cores per physical one; where logical cores are real ones (virtual
 * machines, most phones) that leaves half the cores idle, one of two on a 2-core
 * machine. The value is shown to the backend's start-up only, then restored.
 */
async function withLogicalCores(cores, start) {
  if (!(cores > (navigator.hardwareConcurrency || 1))) return start();
  Object.defineProperty(navigator, 'hardwareConcurrency', { value: cores, configurable: true });
  try {
    return await start();
  } finally {
    delete navigator.hardwareConcurrency; // back to Navigator.prototype's getter
  }
}

/** The converter's notes in model.json (`userDefinedMetadata.penet_tf`), or {}. */
async function modelNotes() {
  try {
    const response = await fetch(MODEL_URL);
    return response.ok ? (await response.json()).userDefinedMetadata?.penet_tf || {} : {};
  } catch {
    return {}; // loadModel reports a missing model
  }
}

/**
 * Starts the backend ?backend= asks for (backends.js: `auto` prefers a hardware GPU, then
 * wasm; WebGL never for a model whose largest tensor is past its exact range, or
 * unknown): the page says why it left WebGL out and runs on WebAssembly.
 */
async function startBackend(notes) {
  if (!BACKENDS.includes(BACKEND)) {
    throw new Error(`Unknown ?backend=${BACKEND}: use one of ${BACKENDS.join(', ')}.`);
  }
  const renderer = webglRenderer();
  const gpu = Boolean(renderer && !SOFTWARE_GL.test(renderer));
  const { order, note } = backendOrder(BACKEND, notes.largest_tensor_elements, gpu);
  if (note) demo.backendNote = note;
  for (const name of order) {
    const info = await tryBackend(name);
    if (info) {
      demo.backendInfo = info;
      return name;
    }
  }
  throw new Error('no TensorFlow.js backend could start');
}

async function loadModel() {
  setStatus('Starting the TensorFlow.js backend…', { progress: 0 });
  demo.backend = await startBackend(await modelNotes());
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

function resizeCanvases(width, height) {
  for (const canvas of [photo, paint, result]) {
    canvas.width = width;
    canvas.height = height;
  }
  demo.photoSize = { width, height };
}

function drawSample() {
  // A synthetic scene, so the demo can be tried before opening a photo.
  resizeCanvases(640, 400);
  const [w, h] = [photo.width, photo.height];
  const sky = photoCtx.createLinearGradient(0, 0, 0, h);
  sky.addColorStop(0, '#6fa8dc');
  sky.addColorStop(0.6, '#d9ecf7');
  sky.addColorStop(0.6, '#7aa45a');
  sky.addColorStop(1, '#3f6b2e');
  photoCtx.fillStyle = sky;
  photoCtx.fillRect(0, 0, w, h);
  photoCtx.fillStyle = '#f6d55c';
  photoCtx.beginPath();
  photoCtx.arc(0.8 * w, 0.2 * h, 0.09 * h, 0, 2 * Math.PI);
  photoCtx.fill();
  photoCtx.fillStyle = '#a0522d';
  photoCtx.fillRect(0.2 * w, 0.45 * h, 0.16 * w, 0.2 * h);
  photoCtx.fillStyle = '#7b2d26';
  photoCtx.beginPath();
  photoCtx.moveTo(0.18 * w, 0.46 * h);
  photoCtx.lineTo(0.28 * w, 0.33 * h);
  photoCtx.lineTo(0.38 * w, 0.46 * h);
  photoCtx.fill();
  newPhoto('sample');
}

async function openPhoto(file) {
  // Inpaint waits while a photo decodes (a large JPEG takes a while): a run started
  // meanwhile painted the earlier photo's result, then this photo replaced the canvases
  // and the download offered that result under this photo's name. Of two quick picks
  // the later one is opened (the first, decoded last, was shown instead).
  const pick = (demo.opening = ++demo.picks);
  updateButtons();
  try {
    await decodeAndShow(file, pick);
  } finally {
    if (demo.opening === pick) demo.opening = 0;
    updateButtons();
  }
}

/** Whether a width x height photo is over the page's limits (then said, by name). */
function tooLarge(name, width, height) {
  if (width * height > MAX_PHOTO_PIXELS) {
    fail(
      `${name} is ${width} × ${height} pixels (${(width * height / 1e6).toFixed(1)} MP); ` +
        `this page takes photos up to ${MAX_PHOTO_PIXELS / 1e6} MP.`
    );
    return true;
  }
  if (Math.max(width, height) > MAX_PHOTO_SIDE) {
    fail(
      `${name} is ${width} × ${height} pixels; browsers draw canvases up to ` +
        `${MAX_PHOTO_SIDE} pixels a side: crop it first.`
    );
    return true;
  }
  return false;
}

async function decodeAndShow(file, pick) {
  setStatus(`Opening ${file.name}…`);
  // The header first: a photo over the limits is refused before its decode (a 400-MP PNG
  // took 6 s and 1.6 GB to be refused; past about 536 MP the decode failed unnamed).
  const head = new Uint8Array(await file.slice(0, HEADER_BYTES).arrayBuffer());
  if (demo.opening !== pick) return; // a later pick is being opened
  const declared = photoSize(head);
  if (declared && tooLarge(file.name, declared.width, declared.height)) return;
  let bitmap;
  try {
    // The file's own pixel values: no colour-space conversion, no premultiplied alpha.
    bitmap = await createImageBitmap(file, {
      colorSpaceConversion: 'none',
      premultiplyAlpha: 'none',
    });
  } catch (error) {
    if (demo.opening === pick) fail(`Cannot read ${file.name} as an image.`, error);
    return;
  }
  if (demo.opening !== pick) {
    bitmap.close(); // a later pick is being opened
    return;
  }
  const { width, height } = bitmap;
  if (tooLarge(file.name, width, height)) {
    bitmap.close();
    return;
  }
  // The photo's ICC profile, for the download: the pixels are its stored values, which
  // mean other colours than sRGB in a Display P3 or Adobe RGB photo.
  const profile = await colourProfile(head);
  if (demo.opening !== pick) {
    bitmap.close(); // a later pick is being opened
    return;
  }
  demo.error = demo.fatal;
  resizeCanvases(width, height);
  photoCtx.fillStyle = '#fff'; // transparent pixels become white, as when printed
  photoCtx.fillRect(0, 0, width, height);
  photoCtx.drawImage(bitmap, 0, 0);
  bitmap.close();
  // A canvas the browser cannot make stays blank without an error (iOS Safari makes none
  // over 16.7 MP, under the page's 40-MP limit): the white fill's far corner must be there.
  if (photoCtx.getImageData(width - 1, height - 1, 1, 1).data[3] !== 255) {
    drawSample();
    fail(
      `${file.name} is ${width} × ${height} pixels: this browser cannot make a canvas that ` +
        'large (iOS Safari: 16.7 MP); open a smaller copy.'
    );
    return;
  }
  newPhoto(file.name, profile);
  if (demo.fatal) {
    setStatus(`${file.name}: ${width} × ${height}, but it cannot be inpainted: ${demo.fatal}`, {
      error: true,
      done: true,
    });
  } else {
    setStatus(`${file.name}: ${width} × ${height}. Paint what should disappear.`, { done: true });
  }
}

function newPhoto(name, profile = null) {
  demo.photo = name;
  demo.profile = profile;
  demo.photosLoaded += 1;
  demo.lastRun = null;
  history.length = 0;
  // A stroke begun on the previous photo ends here: it went on painting the new one,
  // outside the emptied history (Clear and Undo could not take it off).
  stroke = null;
  paintCtx.clearRect(0, 0, paint.width, paint.height);
  resultCtx.clearRect(0, 0, result.width, result.height);
  $('result-caption').textContent = `Result (${photo.width} × ${photo.height})`;
  demo.downloadToken = null; // (a result still being encoded is not this photo's)
  setDownload(null);
  updateButtons();
}

// ---------------------------------------------------------------------------- painting
//
// The paint canvas is the hole mask at the photo's resolution. Its history is a list of
// strokes (the segments drawn, in photo pixels) and clears; undo drops the last entry and
// redraws the rest, which repeats the same drawing calls and so the same pixels.

const history = []; // {kind: 'stroke', width, segments: [[x0, y0, x1, y1], ...]} | {kind: 'clear'}
let stroke = null; // {id, x, y, entry} while a pointer paints

function canvasPoint(event) {
  const rect = paint.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * paint.width) / rect.width,
    y: ((event.clientY - rect.top) * paint.height) / rect.height,
  };
}

/** The brush diameter in photo pixels (the slider is in CSS pixels of the canvas). */
function brushWidth() {
  return Number($('brush').value) * demo.scale();
}

function drawSegment([x0, y0, x1, y1], width) {
  paintCtx.strokeStyle = BRUSH_COLOR;
  paintCtx.fillStyle = BRUSH_COLOR;
  paintCtx.lineWidth = width;
  paintCtx.lineCap = 'round';
  paintCtx.lineJoin = 'round';
  paintCtx.beginPath();
  if (x0 === x1 && y0 === y1) {
    paintCtx.arc(x1, y1, width / 2, 0, 2 * Math.PI);
    paintCtx.fill();
  } else {
    paintCtx.moveTo(x0, y0);
    paintCtx.lineTo(x1, y1);
    paintCtx.stroke();
  }
}

function addSegment(from, to) {
  const segment = [from.x, from.y, to.x, to.y];
  stroke.entry.segments.push(segment);
  drawSegment(segment, stroke.entry.width);
}

function redraw() {
  paintCtx.clearRect(0, 0, paint.width, paint.height);
  const start = history.map((entry) => entry.kind).lastIndexOf('clear') + 1;
  for (const entry of history.slice(start)) {
    for (const segment of entry.segments) drawSegment(segment, entry.width);
  }
}

paint.addEventListener('pointerdown', (event) => {
  if (!demo.photo || demo.running || stroke) return;
  event.preventDefault();
  paint.setPointerCapture(event.pointerId);
  const point = canvasPoint(event);
  const entry = { kind: 'stroke', width: brushWidth(), segments: [] };
  history.push(entry);
  stroke = { id: event.pointerId, ...point, entry };
  addSegment(point, point);
});

paint.addEventListener('pointermove', (event) => {
  if (!stroke || event.pointerId !== stroke.id) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) {
    const point = canvasPoint(each);
    addSegment(stroke, point);
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
  if (!history.length || demo.running || stroke) return;
  history.pop();
  redraw();
  updateButtons();
}

function clearPaint() {
  if (demo.running || stroke || !hasHole()) return;
  history.push({ kind: 'clear' });
  redraw();
  updateButtons();
}

/** Whether anything is painted (strokes after the last clear). */
function hasHole() {
  const start = history.map((entry) => entry.kind).lastIndexOf('clear') + 1;
  return history.slice(start).length > 0;
}

/** The hole mask, one byte per photo pixel: 1 wherever the brush left any paint. */
function readMask() {
  const rgba = paintCtx.getImageData(0, 0, paint.width, paint.height).data;
  const mask = new Uint8Array(paint.width * paint.height);
  for (let i = 0; i < mask.length; i += 1) mask[i] = rgba[4 * i + 3] > 0 ? 1 : 0;
  return mask;
}

// ---------------------------------------------------------------------------- inpainting

const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

/** One S x S inpaint: uint8 RGB [S*S*3] and hole mask [S*S] -> uint8 RGB composite. */
async function runModel(image, mask) {
  const s = demo.size;
  const outputs = tf.tidy(() => {
    const feeds = {
      [demo.inputNames.image]: tf.tensor4d(Int32Array.from(image), [1, s, s, 3], 'int32'),
      [demo.inputNames.mask]: tf.tensor4d(Int32Array.from(mask), [1, s, s, 1], 'int32'),
    };
    return demo.model.execute(feeds);
  });
  const values = await outputs.data();
  outputs.dispose();
  return Uint8Array.from(values);
}

async function inpaint() {
  if (!demo.model || demo.running) return;
  const { width, height } = photo;
  const mask = readMask();
  if (!maskHasHole(mask)) {
    setStatus('Paint the hole first.', { done: true });
    return;
  }
  demo.running = true;
  updateButtons();
  const start = performance.now();
  try {
    const regions = planRegions(mask, width, height, demo.size);
    const pixels = photoCtx.getImageData(0, 0, width, height);
    const composite = new ImageData(new Uint8ClampedArray(pixels.data), width, height);
    const runs = [];
    const blends = new Map(); // a thin panorama's pieces, blended across their cuts
    for (const [index, group] of regions.entries()) {
      setStatus(`Inpainting region ${index + 1} of ${regions.length} on ${demo.backend}…`, {
        progress: index / regions.length,
      });
      await nextFrame(); // let the status paint before the (synchronous) kernels run
      const input = modelInput(pixels, mask, group.region, demo.size);
      const runStart = performance.now();
      const output = await runModel(input.image, input.mask);
      const ms = Math.round(performance.now() - runStart);
      pasteBack(composite, mask, group, output, demo.size, blends);
      runs.push({ ...group, ...input, output, ms });
    }
    blendCuts(composite, mask, blends);
    resultCtx.putImageData(composite, 0, 0);
    const ms = Math.round(performance.now() - start);
    demo.lastRun = { width, height, regions: runs, ms, backend: demo.backend };
    // (a panorama's pieces: 37 times in a row were not read)
    const each =
      runs.length > 4
        ? `${runs.reduce((sum, run) => sum + run.ms, 0)} ms in all`
        : `${runs.map((run) => run.ms).join(' + ')} ms`;
    $('result-caption').textContent =
      `Result (${width} × ${height}; ${runs.length} region${runs.length > 1 ? 's' : ''}, ` +
      `${each} on ${demo.backend})`;
    demo.error = null; // (an earlier run's failure is over)
    setStatus(`Done in ${(ms / 1000).toFixed(1)} s on ${demo.backend}.`, { progress: 1, done: true });
    // Encoded after the page is idle again: a photo opened meanwhile got the previous
    // photo's result under its own name. Only this run's, for this photo, is offered.
    const token = (demo.downloadToken = {});
    const profile = demo.profile;
    result.toBlob(async (blob) => {
      let download = blob;
      if (blob && profile) {
        try {
          download = await withColourProfile(blob, profile);
        } catch (error) {
          console.warn('The download is written without the photo\'s colour profile:', error);
        }
      }
      if (demo.downloadToken === token) setDownload(download);
    }, 'image/png');
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
  const stem = (demo.photo || 'photo').replace(/\.[^.]*$/, '');
  link.download = `${stem}-inpainted.png`;
  link.classList.toggle('disabled', !downloadUrl);
  link.setAttribute('aria-disabled', String(!downloadUrl));
}

function updateButtons() {
  const idle = demo.ready && !demo.running && !demo.opening;
  $('inpaint').disabled = !idle || !demo.photo;
  $('undo').disabled = demo.running || !history.length;
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
    failForGood('TensorFlow.js did not load: run `npm ci` in demos/web (see its README).');
    return;
  }
  try {
    demo.model = await loadModel();
  } catch (error) {
    failForGood(error.message, error);
    return;
  }
  $('size-note').textContent =
    `Photos keep their size. Each painted region is cut out with ${MARGIN} px of context ` +
    `around it, shrunk to the model's ${demo.size} × ${demo.size} if larger, inpainted and ` +
    'pasted back; only painted pixels change.';
  if (!demo.photo) drawSample(); // (a photo opened while the model loaded stays)
  demo.ready = true;
  updateButtons();
  const info = demo.backendInfo;
  const detail =
    demo.backend === 'wasm'
      ? ` (${info.threads} thread${info.threads > 1 ? 's' : ''}${info.simd ? ', SIMD' : ''})`
      : demo.backend === 'webgl'
        ? ` (${info.renderer})`
        : '';
  const note = demo.backendNote ? ` ${demo.backendNote}` : '';
  setStatus(
    `Ready: ${demo.size} × ${demo.size} model on ${demo.backend}${detail}. Paint a hole.${note}`,
    { progress: 1, done: true }
  );
}

main();
