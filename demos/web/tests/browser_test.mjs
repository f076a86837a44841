// Drives the demo page in headless Chromium (Debian's /usr/bin/chromium via playwright-core).
//
//   node tests/browser_test.mjs --url http://127.0.0.1:PORT/ --image photo.png \
//       --out result.json [--screenshot ../../docs/web-demo.png] [--backend wasm]
//
// Opens the page, waits for the model, uploads --image, sets the brush size, paints two
// strokes with the mouse, undoes the second, checks Clear + Undo, clicks Inpaint and
// waits for the result. Writes --out (JSON): the stroke path and brush size in model
// pixels, the page's state, the last run's inputs/output and the result canvas (base64),
// and saves a screenshot. tests/test_web_demo.py makes the numerical assertions.
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
const BRUSH = 18;
// Stroke 1 (kept) and stroke 2 (undone), in model pixels of a 256 x 256 model; scaled below.
const STROKE_1 = [[70, 80], [110, 100], [150, 95], [185, 120], [175, 165]];
const STROKE_2 = [[40, 210], [120, 215]];

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
    viewport: { width: 760, height: 480 },
    deviceScaleFactor: 1,
    hasTouch: true, // the mouse still works; touchscreen.tap sends touch pointer events
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  const url = new URL(args.url);
  if (args.backend !== 'wasm') url.searchParams.set('backend', args.backend);
  await page.goto(url.href);
  await page.waitForFunction(() => window.penetDemo && (window.penetDemo.ready || window.penetDemo.error), null, {
    timeout,
  });
  const loadError = await page.evaluate(() => window.penetDemo.error);
  check(!loadError, `the page failed to load the model: ${loadError}`);
  const size = await page.evaluate(() => window.penetDemo.size);
  const scale = size / 256;
  const stroke1 = STROKE_1.map(([x, y]) => [x * scale, y * scale]);
  const stroke2 = STROKE_2.map(([x, y]) => [x * scale, y * scale]);

  await page.setInputFiles('#file', args.image);
  await page.waitForFunction(() => window.penetDemo.photosLoaded >= 2, null, { timeout });
  await page.locator('#brush').fill(String(BRUSH));
  check((await page.textContent('#brush-value')) === String(BRUSH), 'brush size label not updated');

  const box = await page.locator('#paint').boundingBox();
  async function drag(points) {
    const toPage = ([x, y]) => [box.x + (x * box.width) / size, box.y + (y * box.height) / size];
    await page.mouse.move(...toPage(points[0]));
    await page.mouse.down();
    for (const point of points.slice(1)) await page.mouse.move(...toPage(point), { steps: 8 });
    await page.mouse.up();
  }
  const mask = () => page.evaluate(() => window.penetDemo.maskBase64());

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
  const [tapX, tapY] = [40 * scale, 40 * scale];
  await page.touchscreen.tap(box.x + (tapX * box.width) / size, box.y + (tapY * box.height) / size);
  const tapped = await page.evaluate(
    ([x, y, s]) => atob(window.penetDemo.maskBase64()).charCodeAt(Math.floor(y) * s + Math.floor(x)),
    [tapX, tapY, size]
  );
  check(tapped === 1, 'a touch tap did not paint');
  await page.click('#undo');
  check((await mask()) === afterStroke1, 'Undo did not remove the tapped dot');

  await page.click('#inpaint');
  await page.waitForFunction(() => window.penetDemo.lastRun || window.penetDemo.error, null, {
    timeout,
  });
  const runError = await page.evaluate(() => window.penetDemo.error);
  check(!runError, `inpainting failed: ${runError}`);
  await page.waitForFunction(() => document.getElementById('download').href.startsWith('blob:'), null, {
    timeout: 10000,
  });
  const state = await page.evaluate(() => ({
    run: window.penetDemo.exportRun(),
    result: window.penetDemo.canvasPixels('result'),
    photo: window.penetDemo.canvasPixels('photo'),
    backend: window.penetDemo.backend,
    size: window.penetDemo.size,
    status: document.getElementById('status').textContent,
    download: document.getElementById('download').href,
    crossOriginIsolated: window.crossOriginIsolated,
  }));
  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
  writeFileSync(
    args.out,
    JSON.stringify({ ...state, brush: BRUSH, stroke: stroke1, maskAfterStroke1: afterStroke1, problems })
  );
  console.log(
    JSON.stringify({ backend: state.backend, size: state.size, ms: state.run.ms, status: state.status })
  );
} finally {
  await browser.close();
}
