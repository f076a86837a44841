// Photos picked while another decodes (a large JPEG takes a while): Inpaint stayed
// enabled, so a run started then painted the earlier photo's result, which the page then
// offered under the new photo's name; and of two quick picks the one decoded last was
// shown, whichever was picked last. Decoding is slowed for files named slow*.
//
//   node tests/photo_race_test.mjs --url http://127.0.0.1:PORT/ --slow slow.png \
//       --fast fast.png
//
// Prints one JSON line: Inpaint's state while the slow photo decodes, and the photo shown
// once both picks have settled; tests/test_web_demo.py checks.
import { parseArgs } from 'node:util';
import { chromiumOption, launchChromium } from './chromium.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    slow: { type: 'string' },
    fast: { type: 'string' },
    chromium: chromiumOption,
  },
});
const browser = await launchChromium(args.chromium);
try {
  const page = await browser.newPage();
  await page.addInitScript(() => {
    const decode = window.createImageBitmap;
    window.createImageBitmap = async (source, ...rest) => {
      if (source && String(source.name).startsWith('slow')) {
        await new Promise((resolve) => setTimeout(resolve, 1500));
      }
      return decode.call(window, source, ...rest);
    };
  });
  const url = new URL(args.url);
  url.searchParams.set('backend', 'wasm');
  await page.goto(url.href);
  await page.waitForFunction(() => window.penetDemo && window.penetDemo.ready, null, {
    timeout: 120000,
  });
  const state = () =>
    page.evaluate(() => ({
      photo: window.penetDemo.photo,
      photosLoaded: window.penetDemo.photosLoaded,
      inpaintDisabled: document.getElementById('inpaint').disabled,
    }));
  const before = await state();
  await page.setInputFiles('#file', args.slow);
  const decoding = await state();
  await page.setInputFiles('#file', args.fast);
  await page.waitForFunction(() => !window.penetDemo.opening, null, { timeout: 60000 });
  await page.waitForTimeout(2500); // the slow decode ends meanwhile
  const settled = await state();
  // A stroke begun while the next photo decodes and ended on it: it went on painting the
  // new photo, outside its (emptied) undo history.
  const painted = () =>
    page.evaluate(() => {
      const mask = atob(window.penetDemo.maskBase64());
      let sum = 0;
      for (let i = 0; i < mask.length; i += 1) sum += mask.charCodeAt(i);
      return { painted: sum, undoDepth: window.penetDemo.undoDepth() };
    });
  let box = await page.locator('#paint').boundingBox();
  await page.setInputFiles('#file', args.slow);
  await page.mouse.move(box.x + 0.2 * box.width, box.y + 0.5 * box.height);
  await page.mouse.down();
  await page.mouse.move(box.x + 0.3 * box.width, box.y + 0.5 * box.height, { steps: 5 });
  await page.waitForFunction(() => !window.penetDemo.opening, null, { timeout: 60000 });
  box = await page.locator('#paint').boundingBox();
  await page.mouse.move(box.x + 0.5 * box.width, box.y + 0.6 * box.height, { steps: 10 });
  await page.mouse.up();
  const stroke = await painted();
  console.log(JSON.stringify({ before, decoding, settled, stroke }));
} finally {
  await browser.close();
}
