// Times one S x S inpaint of the demo page's model in headless Chromium, op by op.
//
//   node tests/benchmark.mjs --url http://127.0.0.1:PORT/ --backend wasm --runs 5 \
//       [--threads N] [--fast-slices on|off] [--profile] [--out result.json]
//
// Opens the page (served by `python -m penet_tf.demo`) with ?backend=..., waits for the
// model, then runs it on a fixed pseudo-random photo with a centred (S/2)^2 hole: one
// warm-up run (kernel set-up, shader compilation), then --runs timed runs, each from the
// input tensors to the output's values (`await data()`). With --profile, one more run
// under `tf.profile` gives every kernel's time; they are summed per kernel name.
// Prints one JSON object (and writes it to --out): backend, its details (threads, SIMD,
// WebGL renderer), the warm-up and run times in ms, and the per-kernel profile.
// benchmarks/web_wasm.py drives it.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    backend: { type: 'string', default: 'wasm' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string' },
    'fast-slices': { type: 'string', default: 'on' },
    profile: { type: 'boolean', default: false },
    out: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    'timeout-ms': { type: 'string', default: '900000' },
  },
});
if (!args.url) {
  console.error('missing --url');
  process.exit(2);
}
const timeout = Number(args['timeout-ms']);

const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  // No GPU here: WebGL, when asked for, is SwiftShader (the CPU), for comparison only.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  const url = new URL(args.url);
  url.searchParams.set('backend', args.backend);
  if (args.threads) url.searchParams.set('threads', args.threads);
  if (args['fast-slices'] === 'off') url.searchParams.set('fastslices', '0');
  await page.goto(url.href);
  await page.waitForFunction(
    () => window.penetDemo && (window.penetDemo.ready || window.penetDemo.error),
    null,
    { timeout }
  );
  const error = await page.evaluate(() => window.penetDemo.error);
  if (error) throw new Error(`the page failed to load the model: ${error}`);
  const result = await page.evaluate(
    async ({ runs, profile }) => {
      const tf = window.tf;
      const demo = window.penetDemo;
      const s = demo.size;
      const image = new Int32Array(s * s * 3);
      let seed = 12345;
      for (let i = 0; i < image.length; i += 1) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        image[i] = seed >>> 24;
      }
      const mask = new Int32Array(s * s);
      for (let y = s / 4; y < (3 * s) / 4; y += 1) mask.fill(1, y * s + s / 4, y * s + (3 * s) / 4);
      const once = async () => {
        const start = performance.now();
        const output = tf.tidy(() =>
          demo.model.execute({
            [demo.inputNames.image]: tf.tensor4d(image, [1, s, s, 3], 'int32'),
            [demo.inputNames.mask]: tf.tensor4d(mask, [1, s, s, 1], 'int32'),
          })
        );
        await output.data();
        output.dispose();
        return performance.now() - start;
      };
      const warmup = await once();
      const times = [];
      for (let i = 0; i < runs; i += 1) times.push(await once());
      let kernels = null;
      let profiled = null;
      if (profile) {
        const info = await tf.profile(once);
        // Op-level wrappers (`name__op`) contain their kernels: count kernels only.
        const leaves = info.kernels.filter((kernel) => !kernel.name.endsWith('__op'));
        profiled = leaves.reduce((sum, kernel) => sum + kernel.kernelTimeMs, 0);
        const byName = {};
        for (const kernel of leaves) {
          const entry = (byName[kernel.name] ??= { name: kernel.name, count: 0, ms: 0, largest: null });
          entry.count += 1;
          entry.ms += kernel.kernelTimeMs;
          if (!entry.largest || kernel.kernelTimeMs > entry.largest.ms) {
            entry.largest = {
              ms: kernel.kernelTimeMs,
              inputs: kernel.inputShapes,
              outputs: kernel.outputShapes,
            };
          }
        }
        kernels = Object.values(byName).sort((a, b) => b.ms - a.ms);
      }
      return {
        backend: tf.getBackend(),
        details: demo.backendInfo,
        size: s,
        crossOriginIsolated: window.crossOriginIsolated,
        hardwareConcurrency: navigator.hardwareConcurrency,
        warmupMs: warmup,
        timesMs: times,
        profiledMs: profiled,
        kernels,
      };
    },
    { runs: Number(args.runs), profile: args.profile }
  );
  result.problems = problems;
  if (args.out) writeFileSync(args.out, JSON.stringify(result));
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
