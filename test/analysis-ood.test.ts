// Out of distribution on a hand-built model with known outputs (a·v + b at
// value tokens, b at MASK; see analysis-copy.test.ts): each variant's BERT
// losses against a recomputation on the same matrices, NNM against
// independent solves, the default variant list, and the errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import { type DataConfig, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import type { AnalysisContext } from "../src/analysis/context.js";
import { NnmSolver } from "../src/analysis/nnm-solver.js";
import { OOD_DEFAULTS, defaultVariants, ood } from "../src/analysis/ood.js";
import { renderSvg } from "../src/viz/plot.js";
import { affineModel } from "./helpers/affine.js";


const data: DataConfig = { m: 5, n: 6, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };

function ctxOf(model: Bert, d: DataConfig, seed: number): AnalysisContext {
  return { source: { kind: "checkpoint", file: "memory" }, data: d, kernels: refKernels, seed, outDir: "/tmp", step: 900, model: () => model };
}

test("ood: default variants derived from the data config and the model's positions", async () => {
  const seven: DataConfig = { ...data, m: 7, n: 7 };
  const names = (ps: number) => defaultVariants(seven, ps).map((v) => JSON.stringify(v));
  assert.deepEqual(names(64), [
    "{}", '{"factor":"gaussian"}', '{"factor":"laplace"}', '{"rank":1}', '{"rank":3}', '{"rank":4}',
    '{"pMask":0.1}', '{"pMask":0.2}', '{"pMask":0.4}', '{"pMask":0.5}', '{"pMask":0.6}',
    '{"m":7,"n":6}', '{"m":7,"n":8}', '{"m":6,"n":7}', '{"m":8,"n":7}',
  ]);
  // 49 positions: no larger size fits
  assert.deepEqual(names(49).filter((s) => s.includes('"m"')), ['{"m":7,"n":6}', '{"m":6,"n":7}']);
  // 3×3 rank 2, gaussian: the other ranks are 1 and 3; the factor variants are the two other laws
  const small = defaultVariants({ ...data, m: 3, n: 3, factor: "gaussian" }, 512);
  assert.ok(small.some((v) => v.factor === "uniform") && !small.some((v) => v.factor === "gaussian"));
  assert.deepEqual(small.filter((v) => v.rank !== undefined).map((v) => v.rank), [1, 3]);
  assert.equal(OOD_DEFAULTS.matrices, 128);
  assert.equal(OOD_DEFAULTS.variants, null);
});

test("ood: per-variant BERT losses and NNM MSE equal a recomputation on the same matrices", async () => {
  const a = 0.5, b = 0.1, seed = 8, count = 12;
  const model = affineModel(a, b, 40);
  const variants = [{}, { factor: "gaussian" as const }, { m: 4, n: 7 }, { rank: 1, pMask: 0.5, name: "mix" }];
  const out = await ood(ctxOf(model, data, seed), { matrices: count, variants });
  const rows = out.json.rows as Array<Record<string, any>>;
  assert.deepEqual(rows.map((r) => r.name), ["base", "gaussian", "4×7", "mix"]);
  assert.deepEqual(rows.map((r) => r.kind), ["base", "factor", "size", "rank+p_mask"]);
  for (const [k, v] of variants.entries()) {
    const d: DataConfig = { ...data, clamp: true, ...v };
    const batch = sampleBatch(new Rng(seed), d, count);
    const solver = new NnmSolver(d.m, d.n);
    const T = d.m * d.n;
    let nh = 0, sm = 0, so = 0, sn = 0;
    for (let s = 0; s < count; s++) {
      const M = Float64Array.from(batch.targets.subarray(s * T, (s + 1) * T));
      const h = batch.hidden.subarray(s * T, (s + 1) * T);
      const X = solver.solve(M, h).X;
      for (let i = 0; i < T; i++) {
        if (h[i]) { nh++; sm += (b - M[i]!) ** 2; sn += (X[i]! - M[i]!) ** 2; }
        else so += (a * M[i]! + b - M[i]!) ** 2;
      }
    }
    const r = rows[k]!;
    assert.equal(r.hiddenCells, nh);
    assert.equal(r.m, d.m);
    assert.ok(Math.abs(r.loss_mask - sm / nh) < 1e-6, `${r.name} L_mask ${r.loss_mask} vs ${sm / nh}`);
    assert.ok(Math.abs(r.loss_obs - so / (count * T - nh)) < 1e-6, `${r.name} L_obs`);
    assert.ok(Math.abs(r.loss - (sm + so) / (count * T)) < 1e-6, `${r.name} L`);
    assert.ok(Math.abs(r.nnm_mse_hidden - sn / nh) < 1e-12, `${r.name} NNM`);
    assert.ok(Math.abs(r.ratio - r.loss_mask / r.nnm_mse_hidden) < 1e-12);
  }
  assert.ok(out.findings.some((f) => f.startsWith("in distribution (5×6, rank 2, p_mask 0.3, uniform)")));
  assert.match(out.findings[out.findings.length - 1]!, /BERT below NNM in \d+ of 4 variants/);
  const svg = await renderSvg(out.figures[0]!.spec);
  assert.match(svg, /<svg/);
  assert.match(svg, /out of distribution/);
});

test("ood: variants the model cannot take, or that are not valid data, fail with one line", async () => {
  const ctx = ctxOf(affineModel(1, 0, 40), data, 1);
  await assert.rejects(async () => await ood(ctx, { matrices: 4, variants: [{ m: 7, n: 7 }] }), /needs 49 positions, the model has 40/);
  await assert.rejects(async () => await ood(ctx, { matrices: 4, variants: [{ m: 3, rank: 4 }] }), (e: Error) => e instanceof AbruptError && /variant 0: rank/.test(e.message));
  await assert.rejects(async () => await ood(ctx, { matrices: 4, variants: [{ factor: "cauchy" as never }] }), /factor must be one of/);
  await assert.rejects(async () => await ood(ctx, { matrices: 4, variants: [{ pMask: 0 }] }), AbruptError);
  await assert.rejects(async () => await ood(ctx, { matrices: 4, variants: [] }), AbruptError);
  await assert.rejects(async () => await ood(ctx, { matrices: 0, variants: null }), AbruptError);
});
