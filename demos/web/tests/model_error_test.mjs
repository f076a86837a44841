// The page when its model cannot load (?model=missing/model.json): the error must stay on
// show after a photo is opened (it was replaced by "Paint what should disappear." while
// Inpaint stayed disabled, with nothing saying why), and after a file that is refused.
// Also: the paint layer's box against the photo's on a thin strip, and a photo whose
// header says it is over the page's limit (refused before its decode).
//
//   node tests/model_error_test.mjs --url http://127.0.0.1:PORT/ --image photo.png \
//       --bad not-an-image.png --strip strip.png --huge huge.png
//
// Prints one JSON line: the page's status text and class, penetDemo.error and whether
// Inpaint is disabled, after the load, the photo, the strip, the bad file and the huge
// one, and the strip's photo and paint boxes; tests/test_web_demo.py checks.
import { parseArgs } from 'node:util';
import { chromiumOption, launchChromium } from './chromium.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    image: { type: 'string' },
    bad: { type: 'string' },
    strip: { type: 'string' },
    huge: { type: 'string' },
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
  await page.setInputFiles('#file', args.strip);
  await page.waitForFunction(() => window.penetDemo.photosLoaded > 1, null, { timeout: 60000 });
  const boxes = {
    photo: await page.locator('#photo').boundingBox(),
    paint: await page.locator('#paint').boundingBox(),
  };
  await page.setInputFiles('#file', args.bad);
  await page.waitForFunction(() => window.penetDemo.error.startsWith('Cannot read'), null, {
    timeout: 60000,
  });
  const refused = await state();
  await page.setInputFiles('#file', args.huge);
  await page.waitForFunction(() => window.penetDemo.error.includes('this page takes'), null, {
    timeout: 60000,
  });
  console.log(JSON.stringify({ loaded, opened, boxes, refused, huge: await state() }));
} finally {
  await browser.close();
}
