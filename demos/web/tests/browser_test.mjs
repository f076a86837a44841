// Drives the demo page in headless Chromium (Debian's /usr/bin/chromium via playwright-core).
//
//   node tests/browser_test.mjs --url http://127.0.0.1:PORT/ --image photo.png \
//       --out result.json [--screenshot ../../docs/web-demo.png] [--backend wasm]
//
// Opens the page, waits for the model, uploads --image (any size: the strokes below are
// fractions of its width and height), sets the brush size, paints a large stroke with the
// mouse, a second one that is undone, checks Clear + Undo and a touch tap (undone), paints
// a small stroke far from the first (a second region), clicks Inpaint and waits for the
// result and its download. Writes --out (JSON): the strokes and brush in photo pixels, the
// page's state, every region's crop and model input/output, the photo, result canvas and
// downloaded PNG (base64), and saves a screenshot. tests/test_web_demo.py makes the
// numerical assertions.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    image: { type: 'string' },
    out: { type: 'string' },
    screenshot: { type: 'string' },
    backend: { type: 'string', default: 'wasm' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '240000' },
  },
});
for (const required of ['url', 'image', 'out']) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}
const timeout = Number(args['timeout-ms']);
const BRUSH = 18; // CSS pixels, as the slider shows
// Strokes as fractions of the photo's width and height (for an 800 x 400 photo: a large
// stroke near the left, an undone one at the bottom, a small one at the top right).
const STROKE_1 = [[0.1375, 0.3], [0.225, 0.425], [0.3125, 0.375], [0.375, 0.55], [0.3375, 0.65]];
const STROKE_2 = [[0.125, 0.85], [0.375, 0.875]];
const STROKE_3 = [[0.9, 0.15], [0.9375, 0.225]];
const TAP = [0.05, 0.1];

function check(condition, message) {
  if (!condition) throw new Error(`browser test: ${message}`);
}

const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
const problems = [];
try {
  const context = await browser.newContext({
    viewport: { width: 760, height: 560 },
    deviceScaleFactor: 1,
    hasTouch: true, // the mouse still works; touchscreen.tap sends touch pointer events
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  const url = new URL(args.url);
  url.searchParams.set('backend', args.backend);
  // The photo is opened while the model is still loading (a phone downloading a large
  // model): the page once drew its sample scene over it when the model arrived.
  let releaseModel;
  const modelHeld = new Promise((resolve) => (releaseModel = resolve));
  await page.route('**/model.json', async (route) => {
    await modelHeld;
    await route.continue();
  });
  await page.goto(url.href);
  await page.setInputFiles('#file', args.image);
  await page.waitForFunction(() => window.penetDemo.photosLoaded >= 1, null, { timeout });
  releaseModel();
  await page.waitForFunction(() => window.penetDemo && (window.penetDemo.ready || window.penetDemo.error), null, {
    timeout,
  });
  const loadError = await page.evaluate(() => window.penetDemo.error);
  check(!loadError, `the page failed to load the model: ${loadError}`);
  const opened = await page.evaluate(() => [window.penetDemo.photo, window.penetDemo.photosLoaded]);
  check(opened[0] !== 'sample' && opened[1] === 1, `the opened photo was replaced: ${opened}`);
  const { width, height } = await page.evaluate(() => window.penetDemo.photoSize);
  await page.locator('#brush').fill(String(BRUSH));
  check((await page.textContent('#brush-value')) === String(BRUSH), 'brush size label not updated');

  const box = await page.locator('#paint').boundingBox();
  const toPhoto = (points) => points.map(([fx, fy]) => [fx * width, fy * height]);
  const toPage = ([x, y]) => [box.x + (x * box.width) / width, box.y + (y * box.height) / height];
  async function drag(points) {
    await page.mouse.move(...toPage(points[0]));
    await page.mouse.down();
    for (const point of points.slice(1)) await page.mouse.move(...toPage(point), { steps: 8 });
    await page.mouse.up();
  }
  const mask = () => page.evaluate(() => window.penetDemo.maskBase64());
  const [stroke1, stroke2, stroke3] = [STROKE_1, STROKE_2, STROKE_3].map(toPhoto);

  await drag(stroke1);
  const afterStroke1 = await mask();
  await drag(stroke2);
  const afterStroke2 = await mask();
  check(afterStroke2 !== afterStroke1, 'the second stroke did not change the mask');
  await page.click('#undo');
  check((await mask()) === afterStroke1, 'Undo did not restore the mask of the first stroke');
  await page.click('#clear');
  const cleared = await page.evaluate(() => atob(window.penetDemo.maskBase64()).indexOf('\x01') < 0);
  check(cleared, 'Clear left paint on the mask');
  await page.click('#undo');
  check((await mask()) === afterStroke1, 'Undo after Clear did not restore the mask');
  // A finger tap paints a dot (touch pointer events); undo it too.
  const [tapX, tapY] = [TAP[0] * width, TAP[1] * height];
  await page.touchscreen.tap(...toPage([tapX, tapY]));
  const tapped = await page.evaluate(
    ([x, y, w]) => atob(window.penetDemo.maskBase64()).charCodeAt(Math.floor(y) * w + Math.floor(x)),
    [tapX, tapY, width]
  );
  check(tapped === 1, 'a touch tap did not paint');
  await page.click('#undo');
  check((await mask()) === afterStroke1, 'Undo did not remove the tapped dot');
  await drag(stroke3);
  const painted = await mask();

  await page.click('#inpaint');
  await page.waitForFunction(() => window.penetDemo.lastRun || window.penetDemo.error, null, {
    timeout,
  });
  const runError = await page.evaluate(() => window.penetDemo.error);
  check(!runError, `inpainting failed: ${runError}`);
  await page.waitForFunction(() => document.getElementById('download').href.startsWith('blob:'), null, {
    timeout: 60000,
  });
  const state = await page.evaluate(async () => {
    const link = document.getElementById('download');
    const png = new Uint8Array(await (await fetch(link.href)).arrayBuffer());
    return {
      run: window.penetDemo.exportRun(),
      result: window.penetDemo.canvasPixels('result'),
      photo: window.penetDemo.canvasPixels('photo'),
      photoSize: window.penetDemo.photoSize,
      backend: window.penetDemo.backend,
      backendInfo: window.penetDemo.backendInfo,
      size: window.penetDemo.size,
      brushPixels: window.penetDemo.brushPixels(),
      scale: window.penetDemo.scale(),
      status: document.getElementById('status').textContent,
      download: link.href,
      downloadName: link.download,
      downloadPng: window.penetDemo.base64(png),
      crossOriginIsolated: window.crossOriginIsolated,
    };
  });
  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
  writeFileSync(
    args.out,
    JSON.stringify({
      ...state,
      brush: BRUSH,
      strokes: [stroke1, stroke3],
      maskAfterStroke1: afterStroke1,
      maskPainted: painted,
      problems,
    })
  );
  console.log(
    JSON.stringify({
      backend: state.backend,
      details: state.backendInfo,
      size: state.size,
      photo: state.photoSize,
      regions: state.run.regions.map((group) => ({ region: group.region, ms: group.ms })),
      ms: state.run.ms,
      status: state.status,
    })
  );
} finally {
  await browser.close();
}
