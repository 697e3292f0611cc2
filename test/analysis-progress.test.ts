// Plateau progress measures with attention patterns, hidden states and
// outputs forced through hooks, so each measure has an exact known value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type DataConfig, sampleBatch, structuredMask } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import type { AnalysisContext } from "../src/analysis/context.js";
import type { RunHandle } from "../src/store/run.js";
import { PROGRESS_DEFAULTS, progress, progressAt, progressChunked } from "../src/analysis/progress.js";
import { renderSvg } from "../src/viz/plot.js";

const data: DataConfig = { m: 3, n: 4, rank: 2, pMask: 0.4, prec: 2, factor: "uniform", clamp: false };
const T = 12;
const cfg: ModelConfig = { vocab: 2002, positions: T, L: 2, H: 2, d: 16, ff: 16, lnEps: 1e-12 };

function tiny(seed = 1): Bert {
  const model = new Bert(cfg, refKernels);
  model.init(seed, 0.3);
  return model;
}

test("attention progress: uniform attention scores |optimal|/T; a head on an optimal cell scores 1, a head on itself 0", async () => {
  // row 1 hidden except (1, 3); column 0 hidden: hidden cells (0,0) (1,0) (1,1) (1,2) (2,0)
  const mask = structuredMask(3, 4, { rows: [1], cols: [0], keep: [[1, 3]] });
  const batch = sampleBatch(new Rng(2), data, 5, undefined, mask);
  // optimal (observed) cells of each hidden query's row and column, by hand
  const optimal: Record<number, number[]> = {
    0: [1, 2, 3], // (0,0): row 0 cols 1..3; column 0 all hidden
    4: [7], // (1,0): row 1 only (1,3); column 0 hidden
    5: [7, 1, 9], // (1,1): (1,3); column 1 rows 0, 2
    6: [7, 2, 10], // (1,2)
    8: [9, 10, 11], // (2,0)
  };
  const uniform = Object.values(optimal).reduce((a, ks) => a + ks.length / T, 0) / 5;
  const model = tiny();
  model.addHook("blocks.0.attn.pattern", (a) => a.fill(1 / T));
  model.addHook("blocks.1.attn.pattern", (a, info) => {
    const [B, H] = info.shape as [number, number, number, number];
    a.fill(0);
    for (let b = 0; b < B; b++) {
      for (let q = 0; q < T; q++) {
        a[((b * H + 0) * T + q) * T + (optimal[q]?.[0] ?? q)] = 1; // head 0: first optimal cell
        a[((b * H + 1) * T + q) * T + q] = 1; // head 1: itself
      }
    }
  });
  const p = await progressAt(model, batch);
  assert.equal(p.queries, 5 * 5);
  assert.ok(Math.abs(p.attnUniform - uniform) < 1e-12);
  for (const h of [0, 1]) assert.ok(Math.abs(p.attnByHead[0]![h]! - uniform) < 1e-6, `layer 0 head ${h}: ${p.attnByHead[0]![h]}`);
  assert.deepEqual(p.attnByHead[1], [1, 0]);
  assert.ok(Math.abs(p.attnMaxHead[0]! - uniform) < 1e-6);
  assert.equal(p.attnMaxHead[1], 1);
  assert.ok(Math.abs(p.attnProgress - (2 * uniform + 1) / 4) < 1e-6);
});

test("collapse: identical hidden states give 1, two orthogonal groups give the share of same-group pairs", async () => {
  const batch = sampleBatch(new Rng(3), data, 4);
  const model = tiny();
  const C = cfg.d;
  let mode: "same" | "split" = "same";
  model.addHook("blocks.1.ln2.out", (a, info) => {
    const [B] = info.shape as [number, number, number];
    a.fill(0);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const x = a.subarray((b * T + t) * C, (b * T + t + 1) * C);
        if (mode === "same") { x[0] = 1 + b; x[1] = -2; x[5] = 0.5; } // same within a sample, differs across samples
        else x[t < 5 ? 2 : 7] = t + 1; // positions 0..4 along e2, 5..11 along e7 (norms differ)
      }
    }
  });
  assert.ok(Math.abs((await progressAt(model, batch)).collapse - 1) < 1e-12);
  mode = "split";
  const pairs = (k: number) => (k * (k - 1)) / 2;
  assert.ok(Math.abs((await progressAt(model, batch)).collapse - (pairs(5) + pairs(7)) / pairs(12)) < 1e-12);
});

test("repetition: adjacent outputs equal after rounding to 2 decimals", async () => {
  const batch = sampleBatch(new Rng(4), data, 2);
  const model = tiny();
  // sample 0: 0.1, 0.104 (→ 0.10), 0.2, 0.2, then distinct; sample 1: all equal
  const seq0 = [0.1, 0.104, 0.2, 0.2, 0.31, 0.42, 0.53, 0.64, 0.75, 0.86, 0.97, 1.08];
  model.addHook("readout", (a) => {
    a.set(seq0, 0);
    a.fill(0.5, T);
  });
  const p = await progressAt(model, batch);
  assert.ok(Math.abs(p.repetition - (2 / 11 + 1) / 2) < 1e-12);
  // the losses are those of the forced outputs
  let se = 0;
  for (let i = 0; i < 2 * T; i++) se += ((i < T ? seq0[i]! : 0.5) - batch.targets[i]!) ** 2;
  assert.ok(Math.abs(p.loss - se / (2 * T)) < 1e-6);
});

test("progress over checkpoints: chunked batches give the same numbers; metrics are matched to steps; bad options throw", async () => {
  const models = new Map([[10, tiny(1)], [20, tiny(2)]]);
  const run = { dir: "/tmp/none", cfg: {} as RunHandle["cfg"], metrics: [], steps: [10, 20] };
  const ctx: AnalysisContext = {
    source: { kind: "run", run }, data, kernels: refKernels, seed: 7, outDir: "/tmp", step: 20, model: (s = 20) => models.get(s)!,
  };
  const metrics = [{ step: 9, loss: 0.07, loss_mask: 0.22 }, { step: 21, loss: 0.01, loss_mask: 0.03 }];
  const out = await progress(ctx, { ...PROGRESS_DEFAULTS, steps: [20, 10], matrices: 10, batch: 3, metrics });
  const steps = out.json.steps as Array<Awaited<ReturnType<typeof progressAt>> & { step: number; trainLoss: number; metricsStep: number }>;
  assert.deepEqual(steps.map((s) => s.step), [10, 20]);
  assert.deepEqual(steps.map((s) => [s.metricsStep, s.trainLoss]), [[9, 0.07], [21, 0.01]]);
  const whole = await progressAt(models.get(10)!, sampleBatch(new Rng(7), data, 10));
  for (const k of ["attnProgress", "attnUniform", "collapse", "repetition", "loss", "loss_mask", "loss_obs"] as const) {
    assert.ok(Math.abs(steps[0]![k] - whole[k]) < 1e-9, `${k}: ${steps[0]![k]} vs ${whole[k]}`);
  }
  assert.equal(steps[0]!.queries, whole.queries);
  assert.equal(out.findings.length, 3);
  assert.ok((await renderSvg(out.figures[0]!.spec)).includes("<svg"));
  // chunk size does not matter
  const b = sampleBatch(new Rng(8), data, 7);
  assert.ok(Math.abs((await progressChunked(models.get(20)!, b, 2)).collapse - (await progressAt(models.get(20)!, b)).collapse) < 1e-12);
  await assert.rejects(async () => await progress(ctx, { ...PROGRESS_DEFAULTS, matrices: -1 }), AbruptError);
  await assert.rejects(async () => await progress({ ...ctx, source: { kind: "checkpoint", file: "x" } }, { ...PROGRESS_DEFAULTS, steps: [10] }), AbruptError);
});
