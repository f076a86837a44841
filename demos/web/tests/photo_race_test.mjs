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
  console.log(JSON.stringify({ before, decoding, settled: await state() }));
} finally {
  await browser.close();
}
