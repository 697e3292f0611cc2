// Analyses on the webgpu backend: every experiment of `abrupt analyze` runs
// on a GPU-resident model (hooks download, call and upload) and writes the
// same numbers as on the cpu backend, within 1e-3 relative. The model is a
// tiny run trained here on cpu; both analyses read the same checkpoints.
//
// In CI this runs on lavapipe (ABRUPT_WEBGPU_SOFTWARE=1, set below unless
// the caller chose; see webgpu.test.ts). A missing adapter fails it.

process.env.ABRUPT_WEBGPU_SOFTWARE ??= "1";

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeContext, dataOfRun } from "../src/analysis/context.js";
import { openRun } from "../src/store/run.js";
import { analyze } from "../src/analysis/runner.js";
import { loadModel, predict } from "../src/predict/predict.js";
import { hostKernels, loadKernels } from "../src/kernels/index.js";
import { resolveConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-webgpu-analysis-"));
after(() => rmSync(top, { recursive: true, force: true }));
const run = join(top, "run");
// the reference: cpu; ref where the native addon is missing (tools/gpu-check.sh)
const REFERENCE = process.env.ABRUPT_WEBGPU_PARITY_WITH === "ref" ? "ref" : "cpu";

const small = ["batch=8", "matrices=8", "train=48", "test=16", "pMasks=0.3", "permutations=2", "tsneIterations=30"];

/**
 * Every number of a equals the one of b within rtol relative (floor atol);
 * strings, booleans and nulls are equal; arrays have the same length.
 * Returns the paths that differ.
 */
function diff(a: unknown, b: unknown, path: string, rtol: number, atol: number, out: string[]): void {
  if (typeof a === "number" && typeof b === "number") {
    if (Math.abs(a - b) > atol + rtol * Math.max(Math.abs(a), Math.abs(b))) out.push(`${path}: ${a} vs ${b}`);
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) { out.push(`${path}: length ${a.length} vs ${b.length}`); return; }
    a.forEach((x, i) => diff(x, b[i], `${path}[${i}]`, rtol, atol, out));
    return;
  }
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a).sort(), kb = Object.keys(b).sort();
    if (ka.join() !== kb.join()) { out.push(`${path}: keys ${ka} vs ${kb}`); return; }
    for (const k of ka) diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`, rtol, atol, out);
    return;
  }
  if (a !== b) out.push(`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
}

test("setup: a tiny run with checkpoints at steps 15 and 30 (cpu)", async () => {
  const cfg = resolveConfig("cpu", undefined, {
    model: { L: 2, H: 2, d: 16, ff: 32, positions: 16 },
    data: { m: 4, n: 4, rank: 1, p_mask: 0.3 },
    train: { steps: 30, batch: 16, lr: 3e-3, warmup: 0, seed: 3, eval_every: 0, ckpt_every: 15, ckpt_log: 0, backend: REFERENCE, threads: 0 },
  });
  await train(cfg, { outDir: run, quiet: true });
});

test(`webgpu: every experiment writes the same numbers as on ${REFERENCE} (1e-3 relative)`, async () => {
  const flags = (backend: "cpu" | "ref" | "webgpu", out: string, opt: string[]) => ({ step: "30", seed: 4, backend, out, opt });
  const outs = { ref: join(top, "a-ref"), gpu: join(top, "a-gpu") };
  // all experiments at step 30 (swap: A = 15, B = 30; patch and ablate on
  // the hooks the analyses use: attn.out, attn.z, attn.pattern)
  for (const [which, backend] of [["ref", REFERENCE], ["gpu", "webgpu"]] as const) {
    await analyze("all", run, flags(backend, outs[which], small));
    await analyze("swap", run, flags(backend, outs[which], ["batch=8", "stepA=15", "stepB=30"]));
  }
  const files = readdirSync(outs.ref).filter((f) => f.endsWith(".json")).sort();
  assert.deepEqual(readdirSync(outs.gpu).filter((f) => f.endsWith(".json")).sort(), files);
  const experiments = new Set(files.map((f) => f.replace(/(-step-\d+)?\.json$/, "")));
  for (const e of ["copy", "nnm", "attention", "probe", "embeddings", "patch", "ablate", "swap", "ood", "progress"]) {
    assert.ok(experiments.has(e), `no ${e} result (got ${[...experiments].join(", ")})`);
  }
  for (const f of files) {
    const a = JSON.parse(readFileSync(join(outs.ref, f), "utf8"));
    const b = JSON.parse(readFileSync(join(outs.gpu, f), "utf8"));
    // findings are the numbers above as text (3 significant digits): compared through the JSON
    delete a.findings; delete b.findings;
    // t-SNE amplifies float differences of its input without bound; its input (the position embeddings) is compared
    if (a.positions) { delete a.positions.points; delete b.positions.points; delete a.positions.column; delete b.positions.column; delete a.positions.row; delete b.positions.row; }
    const bad: string[] = [];
    diff(a, b, f, 1e-3, 1e-6, bad);
    assert.deepEqual(bad.slice(0, 10), [], `${f}: ${bad.length} values differ`);
  }
  // the analyses did measure something (not two copies of an empty result)
  const copy = JSON.parse(readFileSync(join(outs.gpu, "copy-step-30.json"), "utf8"));
  assert.ok(copy.mask.loss > 0 && copy.replaced.length === 2);
});

test("webgpu: hooks change downstream activations on the device as on the host; forward() with hooks asks for run()", async () => {
  const gpu = await loadKernels("webgpu");
  const host = hostKernels();
  const r = openRun(run);
  const data = dataOfRun(r);
  const ctxG = makeContext({ kind: "run", run: r }, data, gpu, 1, top, 30);
  const ctxH = makeContext({ kind: "run", run: r }, data, host as typeof gpu, 1, top, 30);
  const mg = ctxG.model(), mh = ctxH.model();
  const tokens = new Int32Array(2 * 16).map((_, i) => (i % 3 === 0 ? 0 : 1000 + i));
  // zero head 1's output in layer 0 and read layer 1's pattern
  for (const m of [mg, mh]) m.addHook("blocks.0.attn.z", (z) => { for (let t = 0; t < 32; t++) z.fill(0, t * 16 + 8, t * 16 + 16); });
  const yg = await mg.run(tokens, 2, 16), yh = await mh.run(tokens, 2, 16);
  const pg = await mg.actHost("blocks.1.attn.pattern"), ph = await mh.actHost("blocks.1.attn.pattern");
  const bad: string[] = [];
  diff(Array.from(yg), Array.from(yh), "out", 1e-4, 1e-6, bad);
  diff(Array.from(pg), Array.from(ph), "pattern", 1e-4, 1e-6, bad);
  assert.deepEqual(bad.slice(0, 5), []);
  const unhooked = makeContext({ kind: "run", run: r }, data, host as typeof gpu, 1, top, 30).model();
  const clean = await unhooked.run(tokens, 2, 16);
  assert.ok(clean.some((x, i) => Math.abs(x - yh[i]!) > 1e-4), "the hook changed the outputs");
  assert.throws(() => mg.forward(tokens, 2, 16), /need the asynchronous model\.run\(\)/);
});

test("webgpu: predict on the device equals predict on the host", async () => {
  const file = join(run, "checkpoints", "step-0000030.safetensors");
  const matrices = [[[0.5, null, -0.25, 0.1], [null, 0.2, 0.3, null], [0.1, 0.1, null, 0.4], [0.9, -0.9, 0, null]]];
  const a = await predict(loadModel(file, hostKernels()), matrices);
  const b = await predict(loadModel(file, await loadKernels("webgpu")), matrices);
  const bad: string[] = [];
  diff(a, b, "predictions", 1e-4, 1e-6, bad);
  assert.deepEqual(bad, []);
});
