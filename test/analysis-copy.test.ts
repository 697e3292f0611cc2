// Copy check on hand-built models whose outputs are known exactly: the
// embedding (v, −v, s, −s) with s = √(200 − v²) has constant mean and
// variance, so LayerNorm keeps it linear in v; attention and MLP outputs are
// zeroed; the read-out gives a·v + b at value tokens and b at MASK. So a = 1,
// b = 0 copies perfectly, a = 0.5 halfway, a = 0 not at all.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import { type DataConfig, roundTo, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { type AnalysisContext, makeContext } from "../src/analysis/context.js";
import { COPY_DEFAULTS, copy, copyOverTraining, fitLine } from "../src/analysis/copy.js";
import { saveCheckpoint } from "../src/store/checkpoint.js";
import { renderSvg } from "../src/viz/plot.js";
import { affineModel } from "./helpers/affine.js";


function ctxOf(model: Bert, data: DataConfig, seed: number): AnalysisContext {
  return { source: { kind: "checkpoint", file: "memory" }, data, kernels: refKernels, seed, outDir: "/tmp", step: 300, model: () => model };
}

const data: DataConfig = { m: 5, n: 6, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };

/** The batch and the random full-rank matrices copy() draws (documented order). */
function redraw(seed: number, B: number) {
  const rng = new Rng(seed);
  const batch = sampleBatch(rng, data, B);
  const random = Float64Array.from({ length: B * batch.T }, () => roundTo(rng.range(-1, 1), data.prec));
  return { batch, random };
}

const close = (x: number | null, y: number, tol: number, what: string) => assert.ok(x !== null && Math.abs(x - y) <= tol, `${what}: ${x} vs ${y}`);

test("copy: a half-copying model (0.5·v + 0.1), loaded from a checkpoint: every number against a recomputation", async () => {
  const a = 0.5, b = 0.1, seed = 12, B = 40;
  const model = affineModel(a, b);
  const dir = mkdtempSync(join(tmpdir(), "abrupt-copy-"));
  const file = join(dir, "affine.safetensors");
  saveCheckpoint(file, model.cfg, model.params, {});
  const ctx = makeContext({ kind: "checkpoint", file }, data, refKernels, seed, dir, -1);
  const out = await copy(ctx, { values: [0.44, -0.24], batch: B });
  const j = out.json as any;

  const { batch, random } = redraw(seed, B);
  let nh = 0, sMask = 0, sObs = 0, s44 = 0, s24 = 0, rObs = 0, rMask = 0;
  for (let i = 0; i < batch.targets.length; i++) {
    const x = batch.targets[i]!, r = random[i]!;
    if (batch.hidden[i]) {
      nh++; sMask += (b - x) ** 2; s44 += (a * 0.44 + b - x) ** 2; s24 += (a * -0.24 + b - x) ** 2; rMask += (b - r) ** 2;
    } else {
      sObs += (a * x + b - x) ** 2; rObs += (a * r + b - r) ** 2;
    }
  }
  const no = batch.targets.length - nh;
  assert.equal(j.matrices, B);
  assert.equal(j.hiddenCells, nh);
  close(j.mask.meanOutHidden, b, 1e-6, "MASK output");
  close(j.mask.loss_mask, sMask / nh, 1e-6, "L_mask with MASK");
  close(j.mask.loss_obs, sObs / no, 1e-6, "L_obs");
  const [r44, r24] = j.replaced;
  close(r44.meanOut, a * 0.44 + b, 1e-5, "mean output at 0.44");
  close(r24.meanOut, a * -0.24 + b, 1e-5, "mean output at -0.24");
  close(r44.meanAbsErr, Math.abs(a * 0.44 + b - 0.44), 1e-5, "|out − 0.44|");
  close(r24.meanAbsErr, Math.abs(a * -0.24 + b + 0.24), 1e-5, "|out + 0.24|");
  close(r44.replaceMse, (a * 0.44 + b - 0.44) ** 2, 1e-5, "(out − 0.44)²");
  close(r24.replaceMse, (a * -0.24 + b + 0.24) ** 2, 1e-5, "(out + 0.24)²");
  assert.ok(r44.stdOut < 1e-5);
  close(r44.loss_mask, s44 / nh, 1e-6, "L_mask with 0.44");
  close(r24.loss_mask, s24 / nh, 1e-6, "L_mask with -0.24");
  close(r44.loss_obs, sObs / no, 1e-6, "L_obs unchanged by the replacement");
  close(j.slope, a, 1e-5, "slope");
  close(j.intercept, b, 1e-5, "intercept");
  assert.equal(j.copying, false, "0.44 → 0.32 is more than 0.1 away");
  close(j.observedCopy.slope, a, 1e-5, "observed-cell slope");
  close(j.random.loss_obs, rObs / no, 1e-6, "random L_obs");
  close(j.random.loss_mask, rMask / nh, 1e-6, "random L_mask");
  close(j.random.observedCopy.slope, a, 1e-5, "random observed-cell slope");
  assert.match(out.findings[0]!, /do not follow.*slope 0\.500/);
  const svg = await renderSvg(out.figures[0]!.spec);
  assert.match(svg, /<svg/);
  assert.match(svg, /copy check/);
});

test("copy: a perfect copier is 'copying' (slope 1), a constant model is not (slope 0)", async () => {
  const seed = 3, B = 32;
  const c1 = (await copy(ctxOf(affineModel(1, 0), data, seed), { values: [0.44, -0.24, 1.5], batch: B })).json as any;
  close(c1.slope, 1, 1e-5, "copier slope");
  assert.equal(c1.copying, true);
  for (const r of c1.replaced) assert.ok(r.meanAbsErr < 1e-5, `copier |out − v| at ${r.value}`);
  assert.ok(c1.mask.loss_obs < 1e-10 && c1.random.loss_obs < 1e-10);
  close(c1.random.observedCopy.slope, 1, 1e-5, "copier on random matrices");
  // with MASK the copier outputs 0 at hidden cells: L_mask = E[X²] there (≈ r/9)
  const { batch, random } = redraw(seed, B);
  let s = 0, sr = 0, nh = 0;
  for (let i = 0; i < batch.targets.length; i++) if (batch.hidden[i]) { s += batch.targets[i]! ** 2; sr += random[i]! ** 2; nh++; }
  close(c1.mask.loss_mask, s / nh, 1e-6, "copier L_mask");
  close(c1.random.loss_mask, sr / nh, 1e-6, "copier random L_mask");

  const c0 = (await copy(ctxOf(affineModel(0, 0.3), data, seed), { values: [0.44, -0.24], batch: B })).json as any;
  close(c0.slope, 0, 1e-7, "constant slope");
  assert.equal(c0.correlation, null, "constant outputs have no correlation");
  assert.equal(c0.copying, false);
  // one value: no slope, and the verdict rests on the mean alone
  const one = (await copy(ctxOf(affineModel(0, 0.3), data, seed), { values: [0.3], batch: B })).json as any;
  assert.equal(one.slope, null);
  assert.equal(one.copying, true);
});

test("copy: fitLine", async () => {
  const l = fitLine([1, 2, 3, 4], [3, 5, 7, 9]);
  assert.deepEqual([l.slope, l.intercept, l.correlation], [2, 1, 1]);
  assert.equal(fitLine([2, 2, 2], [1, 2, 3]).slope, null);
});

test("copy: bad options and data give one-line errors", async () => {
  const ctx = ctxOf(affineModel(1, 0), data, 1);
  assert.deepEqual(COPY_DEFAULTS, { values: [0.44, -0.24], batch: 256 });
  await assert.rejects(async () => await copy(ctx, { values: [], batch: 8 }), AbruptError);
  await assert.rejects(async () => await copy(ctx, { values: [12], batch: 8 }), /outside the vocabulary/);
  await assert.rejects(async () => await copy(ctx, { values: [0.4], batch: 0 }), AbruptError);
  await assert.rejects(async () => await copy(ctxOf(affineModel(1, 0), { ...data, pMask: 0 }, 1), { values: [0.4], batch: 4 }), /no hidden cells/);
});

test("copy over training: rows sorted by step, copying counted, slopes split at the drop", () => {
  const one = (slope: number, copying: boolean, mse: number) => ({
    slope, copying, mask: { loss_mask: 0.1, loss_obs: 1e-4 },
    replaced: [{ value: 0.44, replaceMse: mse }, { value: -0.24, replaceMse: mse / 2 }],
  });
  const out = copyOverTraining([
    { step: 300, json: one(0.2, false, 0.05) },
    { step: 100, json: one(0.99, true, 1e-4) },
    { step: 200, json: one(0.9, true, 1e-3) },
  ], 150);
  const rows = (out.json as { rows: Array<{ step: number; slope: number; replaceMse: Record<string, number> }> }).rows;
  assert.deepEqual(rows.map((r) => r.step), [100, 200, 300]);
  assert.equal(rows[2]!.replaceMse["-0.24"], 0.025);
  assert.equal(out.findings[0], "copying (the copy check's criterion) at 2 of 3 checkpoints, steps 100…300");
  assert.match(out.findings[1]!, /0\.990…0\.990 up to the drop \(step 150\), 0\.200…0\.900 after it \(1 of 2 checkpoints after the drop still copying\)/);
  assert.equal(copyOverTraining([{ step: 1, json: one(1, true, 0) }, { step: 2, json: one(1, true, 0) }], null).findings[1], "no drop found in the run's metrics");
  assert.throws(() => copyOverTraining([{ step: 1, json: one(1, true, 0) }], null), AbruptError);
});
