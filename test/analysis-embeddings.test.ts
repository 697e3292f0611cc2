// Embeddings analysis on tiny models whose tables are planted: norms that
// are symmetric by construction, a known top PC, positions clustered by
// column, a model that cannot see positions (permutation leaves the loss
// exactly unchanged), and a later checkpoint that is an exact rescaling.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type DataConfig, VOCAB, sampleBatch, valueOf } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import type { AnalysisContext } from "../src/analysis/context.js";
import type { RunHandle } from "../src/store/run.js";
import { lossSplit } from "../src/analysis/context.js";
import { EMBEDDINGS_DEFAULTS, type EmbeddingsOptions, embeddings, nnSameRate, permutedLosses, silhouette, tsne } from "../src/analysis/embeddings.js";
import { renderSvg } from "../src/viz/plot.js";

const data: DataConfig = { m: 5, n: 5, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
const cfg: ModelConfig = { vocab: VOCAB, positions: 25, L: 1, H: 2, d: 12, ff: 16, lnEps: 1e-12 };
const C = cfg.d;
const opts: EmbeddingsOptions = { ...EMBEDDINGS_DEFAULTS, matrices: 32, batch: 16, permutations: 3, tsneIterations: 500 };

/**
 * Token row of value v: 2|v|·e0 + 0.5·sign(v)·e1 (+1 in e2, so ‖e(v)‖ is
 * even in v); position row of cell (i, j): 3·e(3 + j) + small noise.
 */
function planted(seed = 1): Bert {
  const model = new Bert(cfg, refKernels);
  model.init(seed, 0.3);
  const rng = new Rng(seed);
  model.paramViews.wte.fill(0, C); // keep the MASK row zero as well
  for (let id = 1; id < VOCAB; id++) {
    const v = valueOf(id);
    model.paramViews.wte[id * C] = 2 * Math.abs(v);
    model.paramViews.wte[id * C + 1] = 0.5 * Math.sign(v);
    model.paramViews.wte[id * C + 2] = 1;
  }
  model.paramViews.wpe.fill(0);
  for (let t = 0; t < data.m * data.n; t++) {
    for (let c = 0; c < C; c++) model.paramViews.wpe[t * C + c] = 0.05 * rng.normal();
    model.paramViews.wpe[t * C + 3 + (t % data.n)]! += 3;
  }
  return model;
}

function ctxOf(model: (step?: number) => Bert, run = false): AnalysisContext {
  const source = run
    ? { kind: "run" as const, run: { dir: "/tmp/none", cfg: {} as RunHandle["cfg"], metrics: [], steps: [1, 2] } }
    : { kind: "checkpoint" as const, file: "none" };
  return { source, data, kernels: refKernels, seed: 5, outDir: "/tmp", step: 2, model };
}

test("embeddings: symmetric norms, PCs of magnitude and sign, positions clustered by column", async () => {
  const model = planted();
  const out = await embeddings(ctxOf(() => model), opts);
  const j = out.json as any;
  // ‖e(v)‖ = sqrt(4v² + 0.25·[v≠0] + 1): exactly even in v
  assert.equal(j.tokenNorm.norms.length, 2001);
  assert.ok(Math.abs(j.tokenNorm.values[1000]) === 0 && j.tokenNorm.values[0] === -10 && j.tokenNorm.values[2000] === 10);
  assert.ok(Math.abs(j.tokenNorm.norms[1000 + 70] - Math.sqrt(4 * 0.49 + 0.25 + 1)) < 1e-6);
  assert.ok(j.tokenNorm.symmetry.all > 0.999999 && j.tokenNorm.symmetry.zoom > 0.999999);
  // variance along e0 (2|v|, ≈ 0.75) exceeds that along e1 (0.5·sign, ≈ 0.25): PC1 = |v|, PC2 = sign
  const { explained, corr } = j.tokenPca;
  assert.ok(Math.abs(corr.pc1.abs) > 0.999999 && Math.abs(corr.pc2.sign) > 0.999999, JSON.stringify(corr));
  assert.ok(Math.abs(corr.pc1.sign) < 1e-6 && Math.abs(corr.pc2.abs) < 1e-6);
  assert.ok(Math.abs(explained[0] + explained[1] - 1) < 1e-9 && explained[0] > explained[1]);
  // positions: column clusters in the original space and after t-SNE; rows are not clusters
  const { column, row } = j.positions;
  assert.equal(column.nnOrig, 1);
  assert.ok(column.nn2d >= 0.9, `t-SNE nearest-neighbour same-column rate ${column.nn2d}`);
  assert.ok(column.silhouetteOrig > 0.8 && column.silhouette2d > 0.5);
  assert.ok(row.nnOrig < 0.3 && row.silhouetteOrig < 0);
  assert.ok(Math.abs(column.nnChance - 4 / 24) < 1e-12);
  assert.equal(out.findings.length, 4);
  for (const fig of out.figures) assert.ok((await renderSvg(fig.spec)).includes("<svg"), fig.name);
});

test("embeddings: t-SNE is deterministic for a seed and leaves Math.random as it was", async () => {
  const model = planted();
  const X = Float64Array.from(model.paramViews.wpe.subarray(0, 25 * C));
  const before = Math.random;
  const a = tsne(X, 25, C, 7, 8, 200);
  const b = tsne(X, 25, C, 7, 8, 200);
  const c = tsne(X, 25, C, 8, 8, 200);
  assert.equal(Math.random, before);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test("clustering scores on hand-placed points", async () => {
  // two tight pairs far apart: labels by pair → perfect; crossed labels → nearest neighbour never agrees
  const X = [0, 0, 0.1, 0, 10, 0, 10.1, 0];
  assert.equal(nnSameRate(X, 4, 2, [0, 0, 1, 1]), 1);
  assert.equal(nnSameRate(X, 4, 2, [0, 1, 0, 1]), 0);
  // silhouette of point 0 with labels by pair: a = 0.1, b = (10 + 10.1)/2 → (b − a)/b
  const s0 = (10.05 - 0.1) / 10.05, s1 = (9.95 - 0.1) / 9.95; // points 0/3 and 1/2 are mirror images
  assert.ok(Math.abs(silhouette(X, 4, 2, [0, 0, 1, 1]) - (s0 + s1) / 2) < 1e-12);
});

test("permuting position embeddings: no effect on a model that cannot see positions; the loaded model is untouched", async () => {
  const batch = sampleBatch(new Rng(1), data, 8);
  const perms = [[1, 0, ...Array.from({ length: 23 }, (_, i) => i + 2)], Array.from({ length: 25 }, (_, i) => 24 - i)];
  // all position rows equal: positions are invisible
  const blind = planted();
  for (let t = 1; t < 25; t++) blind.paramViews.wpe.copyWithin(t * C, 0, C);
  const r = await permutedLosses(blind, batch, perms, 3);
  for (const run of r.runs) assert.deepEqual(run, r.unpermuted);
  // a model that sees positions: the loss changes, the original parameters do not, the unpermuted loss is the plain one
  const model = planted(2);
  const saved = model.params.slice();
  const s = await permutedLosses(model, batch, perms, 3);
  assert.deepEqual(model.params, saved);
  assert.deepEqual(s.unpermuted, lossSplit(model.forward(batch.tokens, 8, 25), batch.targets, batch.hidden));
  for (const run of s.runs) assert.notEqual(run.loss, s.unpermuted.loss);
});

test("PCA across checkpoints uses the fixed basis of the analysed step: a rescaled table gives rescaled coordinates", async () => {
  const m2 = planted();
  const m1 = new Bert(cfg, refKernels);
  m1.params.set(m2.params);
  for (let i = 0; i < m1.paramViews.wte.length; i++) m1.paramViews.wte[i]! *= 0.5;
  const out = await embeddings(ctxOf((s) => (s === 1 ? m1 : m2), true), { ...opts, steps: [1, 2], permutations: 0 });
  const ps = (out.json as any).pcaSteps;
  assert.equal(ps.basisStep, 2);
  const [a, b] = ps.steps;
  assert.equal(a.step, 1);
  for (let i = 0; i < b.points.length; i++) {
    assert.ok(Math.abs(a.points[i].pc1 - 0.5 * b.points[i].pc1) < 1e-6 && Math.abs(a.points[i].pc2 - 0.5 * b.points[i].pc2) < 1e-6);
  }
  assert.ok(out.figures.some((f) => f.name === "pca-steps") && !out.figures.some((f) => f.name === "permutation"));
  await assert.rejects(async () => await embeddings(ctxOf(() => m2), { ...opts, steps: [1] }), AbruptError);
  await assert.rejects(async () => await embeddings(ctxOf(() => m2), { ...opts, matrices: 0 }), AbruptError);
});
