// Runs the demo page's model once, in headless Chromium, on a given backend.
//
//   node tests/run_model_page.mjs --url http://127.0.0.1:PORT/ --backend webgl \
//       --input INPUT.bin --output OUTPUT.bin
//
// INPUT.bin: the uint8 image [S, S, 3] followed by the uint8 mask [S, S] (nonzero = hole),
// as for run_model_node.mjs; OUTPUT.bin: the uint8 composite [S, S, 3]. Prints one JSON
// line {"backend", "details", "note", "status", "size", "ms"}: the backend the page
// started (it may refuse the one asked for, and say why in "note"). Without a GPU,
// Chromium's WebGL is SwiftShader: slow, but the same shaders as on a GPU.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    backend: { type: 'string', default: 'webgl' },
    input: { type: 'string' },
    output: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '300000' },
  },
});
for (const required of ['url', 'input', 'output']) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}
const timeout = Number(args['timeout-ms']);
const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const url = new URL(args.url);
  url.searchParams.set('backend', args.backend);
  await page.goto(url.href);
  await page.waitForFunction(
    () => window.penetDemo && (window.penetDemo.ready || window.penetDemo.error),
    null,
    { timeout }
  );
  const error = await page.evaluate(() => window.penetDemo.error);
  if (error) throw new Error(`the page failed to load the model: ${error}`);
  const input = readFileSync(args.input).toString('base64');
  const result = await page.evaluate(async (encoded) => {
    const tf = window.tf;
    const demo = window.penetDemo;
    const s = demo.size;
    const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
    if (bytes.length !== s * s * 4) throw new Error(`expected ${s * s * 4} input bytes`);
    const start = performance.now();
    const output = tf.tidy(() =>
      demo.model.execute({
        [demo.inputNames.image]: tf.tensor4d(Int32Array.from(bytes.subarray(0, s * s * 3)), [1, s, s, 3], 'int32'),
        [demo.inputNames.mask]: tf.tensor4d(Int32Array.from(bytes.subarray(s * s * 3)), [1, s, s, 1], 'int32'),
      })
    );
    const values = await output.data();
    output.dispose();
    return {
      backend: tf.getBackend(),
      details: demo.backendInfo,
      note: demo.backendNote,
      status: document.getElementById('status').textContent,
      size: s,
      ms: Math.round(performance.now() - start),
      output: demo.base64(Uint8Array.from(values)),
    };
  }, input);
  writeFileSync(args.output, Buffer.from(result.output, 'base64'));
  delete result.output;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
