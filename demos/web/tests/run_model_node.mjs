// Runs a converted PEN-Net TF.js graph model in Node (pure-JS @tensorflow/tfjs, no tfjs-node).
//
//   node tests/run_model_node.mjs MODEL_DIR INPUT.bin OUTPUT.bin [wasm|cpu]
//
// INPUT.bin: the uint8 image [S, S, 3] followed by the uint8 mask [S, S] (nonzero = hole),
// S read from model.json. OUTPUT.bin: the uint8 composite [S, S, 3]. On wasm, the page's
// faster slice kernels (../wasm_kernels.js) are used, as in the browser. Prints one JSON line
// {"backend", "size", "ops", "ms"}; fails (exit 1) if the requested backend cannot be used
// or a kernel is missing, so a pass proves the model runs on that backend.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { installFastSlices } from '../wasm_kernels.js';

const [modelDir, inputPath, outputPath, backend = 'wasm'] = process.argv.slice(2);
if (!outputPath) {
  console.error('usage: node run_model_node.mjs MODEL_DIR INPUT.bin OUTPUT.bin [wasm|cpu]');
  process.exit(2);
}

/** An IOHandler reading model.json and its weight shards from the file system. */
function fileHandler(dir) {
  return {
    async load() {
      const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
      const specs = [];
      const buffers = [];
      for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const path of group.paths) buffers.push(readFileSync(join(dir, path)));
      }
      const data = Buffer.concat(buffers);
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        signature: json.signature,
        userDefinedMetadata: json.userDefinedMetadata,
        weightSpecs: specs,
        weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      };
    },
  };
}

if (backend === 'wasm' && !installFastSlices(tf)) throw new Error('wasm_kernels.js: not installed');
if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to start`);
await tf.ready();
if (tf.getBackend() !== backend) throw new Error(`running on ${tf.getBackend()}, not ${backend}`);
const model = await tf.loadGraphModel(fileHandler(modelDir));
const size = model.inputs.find((input) => input.name.startsWith('image')).shape[1];
const input = readFileSync(inputPath);
if (input.length !== size * size * 4) {
  throw new Error(`${inputPath}: expected ${size * size * 4} bytes for a ${size}x${size} model`);
}
const image = tf.tensor4d(Int32Array.from(input.subarray(0, size * size * 3)), [1, size, size, 3], 'int32');
const mask = tf.tensor4d(Int32Array.from(input.subarray(size * size * 3)), [1, size, size, 1], 'int32');
const feeds = {};
for (const spec of model.inputs) feeds[spec.name] = spec.name.startsWith('image') ? image : mask;
const start = performance.now();
const output = model.execute(feeds);
const values = await output.data();
const ms = performance.now() - start;
writeFileSync(outputPath, Uint8Array.from(values));
const ops = Object.keys(model.artifacts?.modelTopology?.node?.reduce?.((o, n) => ({ ...o, [n.op]: 1 }), {}) ?? {});
console.log(JSON.stringify({ backend: tf.getBackend(), size, ops: ops.length, ms: Math.round(ms) }));
