// The page when its model cannot load (?model=missing/model.json): the error must stay on
// show after a photo is opened (it was replaced by "Paint what should disappear." while
// Inpaint stayed disabled, with nothing saying why), and after a file that is refused.
//
//   node tests/model_error_test.mjs --url http://127.0.0.1:PORT/ --image photo.png \
//       --bad not-an-image.png
//
// Prints one JSON line: the page's status text and class, penetDemo.error and whether
// Inpaint is disabled, after the load, the photo and the bad file; tests/test_web_demo.py
// checks.
import { parseArgs } from 'node:util';
import { chromiumOption, launchChromium } from './chromium.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    image: { type: 'string' },
    bad: { type: 'string' },
    chromium: chromiumOption,
  },
});
const browser = await launchChromium(args.chromium);
try {
  const page = await browser.newPage();
  const url = new URL(args.url);
  url.searchParams.set('model', 'missing/model.json');
  url.searchParams.set('backend', 'wasm');
  await page.goto(url.href);
  await page.waitForFunction(() => window.penetDemo && window.penetDemo.error, null, {
    timeout: 120000,
  });
  const state = () =>
    page.evaluate(() => ({
      status: document.getElementById('status').textContent,
      statusIsError: document.getElementById('status').classList.contains('error'),
      error: window.penetDemo.error,
      inpaintDisabled: document.getElementById('inpaint').disabled,
    }));
  const loaded = await state();
  await page.setInputFiles('#file', args.image);
  await page.waitForFunction(() => window.penetDemo.photosLoaded > 0, null, { timeout: 60000 });
  const opened = await state();
  await page.setInputFiles('#file', args.bad);
  await page.waitForFunction(() => window.penetDemo.error.startsWith('Cannot read'), null, {
    timeout: 60000,
  });
  console.log(JSON.stringify({ loaded, opened, refused: await state() }));
} finally {
  await browser.close();
}
