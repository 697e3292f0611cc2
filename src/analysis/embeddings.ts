// Experiment 6, embeddings (SPEC §4 "Embeddings"): the learned token and
// position tables of a checkpoint.
//
// - Token norms: ‖wte[id]‖ for ids 1..2001 (values −10…10). Symmetry =
//   Pearson correlation of ‖e(v)‖ with ‖e(−v)‖ over 0 < v ≤ 10 and over the
//   zoom 0 < v ≤ 1.5 (uniform rank-r data only reaches |v| ≤ r).
// - Token PCA: the raw embeddings of values −1.5…1.5 (301 rows), top two PCs
//   (largest-|.| loading positive), explained variance, and correlations of
//   each PC's scores with |v| and sign(v).
// - PCA across checkpoints (option steps, needs a run): the same 301
//   embeddings of each listed checkpoint, each centred on its own mean and
//   projected on the FIXED top-2 basis of the analysed checkpoint (ctx.step).
// - Position t-SNE: the m·n used rows of wpe, 2-D t-SNE (tsne-js; see
//   `tsne` for how it is seeded), coloured by column and by row. Clustering
//   scores, for the column and the row labels, in the 2-D embedding and in
//   the original C-dim space (Euclidean): nearest-neighbour same-label rate
//   (chance: (m−1)/(m·n−1) for columns) and mean silhouette.
// - Permutation: the loss (L, L_mask, L_obs) on `matrices` matrices from
//   Rng(ctx.seed) with the m·n used position rows permuted (`permutations`
//   non-identity permutations from Rng(ctx.seed + 1)), mean ± sd, vs
//   unpermuted. The permuted model is a copy; the loaded model is untouched.
//
// JSON:
//   tokenNorm: {values: number[], norms: number[], symmetry: {all, zoom}}
//   tokenPca: {explained: [pc1, pc2], corr: {pc1: {abs, sign}, pc2: {abs, sign}},
//              points: {value, pc1, pc2}[]}
//   pcaSteps: {basisStep, steps: {step, points: {value, pc1, pc2}[]}[]}  (steps given only)
//   positions: {perplexity, iterations, learningRate, points: {pos, row, col, x, y}[],
//               column: Clustering, row: Clustering}
//     Clustering = {nn2d, nnOrig, silhouette2d, silhouetteOrig, nnChance}
//   permutation: {matrices, permutations, unpermuted: Loss, mean: Loss, sd: Loss, runs: Loss[]}
//     Loss = {loss, loss_mask, loss_obs}
// Figures: token-norm, token-pca, position-tsne, permutation, pca-steps (steps given only).

import { createRequire } from "node:module";
import { z } from "zod";
import { type Batch, VOCAB, sampleBatch, tokenOf } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import { type AnalysisContext, type AnalysisOutput, type AnyBert, lossSplit } from "./context.js";
import { forwardBatch } from "./forward.js";
import { type Experiment, count } from "./experiment.js";
import { pca, pearson, project } from "./linalg.js";

export const EmbeddingsOptionsSchema = z.object({
  /** checkpoint steps for the fixed-basis PCA ([]: none; with a run, `abrupt analyze` takes its checkpoints up to the analysed one) */
  steps: z.array(z.number()).default([]),
  /** random permutations of the position embeddings */
  permutations: count(5, 10_000, 0),
  /** matrices for the permutation loss */
  matrices: count(512),
  /** matrices per forward pass */
  batch: count(64),
  /** t-SNE perplexity (capped at (m·n − 1)/3) */
  perplexity: z.number().default(10),
  /** t-SNE iterations */
  tsneIterations: count(1000, 1_000_000),
  /** t-SNE learning rate (10: tsne-js's own default, 1000, and even 100 scatter a few dozen points) */
  tsneLearningRate: z.number().default(10),
});
export type EmbeddingsOptions = z.output<typeof EmbeddingsOptionsSchema>;
export const EMBEDDINGS_DEFAULTS: EmbeddingsOptions = EmbeddingsOptionsSchema.parse({});

export interface Loss { loss: number; loss_mask: number; loss_obs: number }
export interface Clustering { nn2d: number; nnOrig: number; silhouette2d: number; silhouetteOrig: number; nnChance: number }

const ZOOM = 1.5;

interface TsneModel {
  init(o: { data: number[][]; type: "dense" }): void;
  run(): [number, number];
  getOutput(): number[][];
}
type TsneCtor = new (cfg: { dim: number; perplexity: number; earlyExaggeration: number; learningRate: number; nIter: number; metric: string }) => TsneModel;

/**
 * 2-D t-SNE of `rows` points [rows, cols] with tsne-js. tsne-js draws its
 * initial embedding from Math.random and has no seed option, so Math.random
 * is replaced by our seeded Rng for the duration of the call (restored in
 * `finally`): the same seed gives the same output. Note tsne-js builds its
 * input affinities from exp(−β·d) with the plain Euclidean distance d (not d²).
 */
export function tsne(X: ArrayLike<number>, rows: number, cols: number, seed: number, perplexity: number, iterations: number, learningRate = 10): Float64Array {
  const TSNE = createRequire(import.meta.url)("tsne-js") as TsneCtor;
  const data: number[][] = [];
  for (let i = 0; i < rows; i++) data.push(Array.from({ length: cols }, (_, j) => X[i * cols + j]!));
  const rng = new Rng(seed);
  const saved = Math.random;
  Math.random = () => rng.uniform();
  try {
    const t = new TSNE({ dim: 2, perplexity, earlyExaggeration: 4, learningRate, nIter: iterations, metric: "euclidean" });
    t.init({ data, type: "dense" });
    t.run();
    return Float64Array.from(t.getOutput().flat());
  } finally {
    Math.random = saved;
  }
}

function sqDist(X: ArrayLike<number>, dim: number, a: number, b: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += (X[a * dim + k]! - X[b * dim + k]!) ** 2;
  return s;
}

/** Fraction of points whose nearest other point (Euclidean) has the same label. */
export function nnSameRate(X: ArrayLike<number>, n: number, dim: number, labels: number[]): number {
  let same = 0;
  for (let a = 0; a < n; a++) {
    let best = -1, bd = Infinity;
    for (let b = 0; b < n; b++) {
      if (b === a) continue;
      const d = sqDist(X, dim, a, b);
      if (d < bd) { bd = d; best = b; }
    }
    if (best >= 0 && labels[best] === labels[a]) same++;
  }
  return same / n;
}

/** Mean silhouette (Euclidean) of a labelling; points alone in their label score 0. */
export function silhouette(X: ArrayLike<number>, n: number, dim: number, labels: number[]): number {
  const ids = [...new Set(labels)];
  let total = 0;
  for (let a = 0; a < n; a++) {
    const sum = new Map<number, number>(ids.map((l) => [l, 0]));
    const cnt = new Map<number, number>(ids.map((l) => [l, 0]));
    for (let b = 0; b < n; b++) {
      if (b === a) continue;
      sum.set(labels[b]!, sum.get(labels[b]!)! + Math.sqrt(sqDist(X, dim, a, b)));
      cnt.set(labels[b]!, cnt.get(labels[b]!)! + 1);
    }
    const own = labels[a]!;
    if (cnt.get(own)! === 0) continue;
    const ai = sum.get(own)! / cnt.get(own)!;
    let bi = Infinity;
    for (const l of ids) if (l !== own && cnt.get(l)! > 0) bi = Math.min(bi, sum.get(l)! / cnt.get(l)!);
    const den = Math.max(ai, bi);
    total += den > 0 && Number.isFinite(bi) ? (bi - ai) / den : 0;
  }
  return total / n;
}

/** A random permutation of 0..n−1 other than the identity (n ≥ 2). */
function permutation(rng: Rng, n: number): number[] {
  for (;;) {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    if (p.some((x, i) => x !== i)) return p;
  }
}

/**
 * Losses on `batch` of a COPY of `model` whose position rows 0..T−1 are
 * permuted (row t of the copy = row perm[t] of the original), for each
 * permutation; plus the unpermuted loss.
 */
export async function permutedLosses(model: AnyBert, batch: Batch, perms: number[][], chunk: number): Promise<{ unpermuted: Loss; runs: Loss[] }> {
  const unpermuted = lossSplit(await forwardBatch(model, batch, { chunk }), batch.targets, batch.hidden);
  const copy = model.clone();
  const C = model.cfg.d;
  const wpe = await model.getParam("embed.pos.weight");
  const permuted = wpe.slice();
  const runs: Loss[] = [];
  for (const perm of perms) {
    perm.forEach((src, t) => permuted.set(wpe.subarray(src * C, (src + 1) * C), t * C));
    copy.setParam("embed.pos.weight", permuted);
    runs.push(lossSplit(await forwardBatch(copy, batch, { chunk }), batch.targets, batch.hidden));
  }
  return { unpermuted, runs };
}

function meanSd(xs: number[]): { mean: number; sd: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

function checkOptions(o: EmbeddingsOptions, T: number): void {
  const posInt = (x: number) => Number.isInteger(x) && x > 0;
  if (!Array.isArray(o.steps) || o.steps.some((s) => !Number.isInteger(s) || s < 0)) throw new AbruptError(`embeddings: steps must be checkpoint step numbers (got ${JSON.stringify(o.steps)})`);
  if (!Number.isInteger(o.permutations) || o.permutations < 0) throw new AbruptError(`embeddings: permutations must be a non-negative integer (got ${o.permutations})`);
  if (!posInt(o.matrices)) throw new AbruptError(`embeddings: matrices must be a positive integer (got ${o.matrices})`);
  if (!posInt(o.batch)) throw new AbruptError(`embeddings: batch must be a positive integer (got ${o.batch})`);
  if (!(o.perplexity > 0)) throw new AbruptError(`embeddings: perplexity must be positive (got ${o.perplexity})`);
  if (!posInt(o.tsneIterations)) throw new AbruptError(`embeddings: tsneIterations must be a positive integer (got ${o.tsneIterations})`);
  if (!(o.tsneLearningRate > 0)) throw new AbruptError(`embeddings: tsneLearningRate must be positive (got ${o.tsneLearningRate})`);
  if (T < 4) throw new AbruptError(`embeddings: a ${T}-cell matrix has too few positions for t-SNE (need at least 4)`);
}

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

export async function embeddings(ctx: AnalysisContext, opts: EmbeddingsOptions = EMBEDDINGS_DEFAULTS): Promise<AnalysisOutput> {
  const { m, n } = ctx.data;
  const T = m * n;
  checkOptions(opts, T);
  if (opts.steps.length > 0 && ctx.source.kind !== "run") throw new AbruptError("embeddings: steps (PCA across checkpoints) needs a run directory, not a lone checkpoint");
  const model = ctx.model();
  const C = model.cfg.d;
  if (model.cfg.vocab < VOCAB) throw new AbruptError(`embeddings: the model's vocabulary (${model.cfg.vocab}) is smaller than the value vocabulary (${VOCAB})`);
  const f = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : "n/a");
  const findings: string[] = [];

  // ---- token-embedding norms
  const wte = await model.getParam("embed.tok.weight");
  const values: number[] = [], norms: number[] = [];
  for (let id = 1; id < VOCAB; id++) {
    const e = wte.subarray(id * C, (id + 1) * C);
    let s = 0;
    for (let c = 0; c < C; c++) s += e[c]! * e[c]!;
    values.push((id - 1001) / 100);
    norms.push(Math.sqrt(s));
  }
  const zero = 1000; // index of v = 0 in values
  const sym = (maxK: number) => {
    const pos: number[] = [], neg: number[] = [];
    for (let k = 1; k <= maxK; k++) { pos.push(norms[zero + k]!); neg.push(norms[zero - k]!); }
    return pearson(pos, neg);
  };
  const symmetry = { all: sym(1000), zoom: sym(Math.round(ZOOM * 100)) };
  findings.push(`token-embedding norm vs value: corr(‖e(v)‖, ‖e(−v)‖) = ${f(symmetry.zoom)} over 0 < v ≤ ${ZOOM}, ${f(symmetry.all)} over 0 < v ≤ 10`);

  // ---- token PCA on values −1.5…1.5
  const zoomIds: number[] = [];
  for (let k = -ZOOM * 100; k <= ZOOM * 100; k++) zoomIds.push(tokenOf(k / 100));
  const zoomVals = zoomIds.map((id) => values[id - 1]!);
  const tokRows = (emb: Float32Array) => {
    const X = new Float64Array(zoomIds.length * C);
    zoomIds.forEach((id, i) => X.set(emb.subarray(id * C, (id + 1) * C), i * C));
    return X;
  };
  const tp = pca(tokRows(wte), zoomIds.length, C, 2);
  const absV = zoomVals.map(Math.abs), sgnV = zoomVals.map(Math.sign);
  const pcScores = (s: Float64Array, c: number) => zoomIds.map((_, i) => s[i * 2 + c]!);
  const corr = {
    pc1: { abs: pearson(pcScores(tp.scores, 0), absV), sign: pearson(pcScores(tp.scores, 0), sgnV) },
    pc2: { abs: pearson(pcScores(tp.scores, 1), absV), sign: pearson(pcScores(tp.scores, 1), sgnV) },
  };
  const tokPoints = zoomVals.map((value, i) => ({ value, pc1: tp.scores[i * 2]!, pc2: tp.scores[i * 2 + 1]! }));
  findings.push(
    `token PCA (values −${ZOOM}…${ZOOM}): PC1 ${f(100 * tp.explained[0]!)}% of variance, corr with |v| ${f(corr.pc1.abs)}, with sign(v) ${f(corr.pc1.sign)}; ` +
    `PC2 ${f(100 * tp.explained[1]!)}%, corr with |v| ${f(corr.pc2.abs)}, with sign(v) ${f(corr.pc2.sign)}`,
  );

  // ---- the same PCA across checkpoints, fixed basis of the analysed checkpoint
  const pcaSteps = opts.steps.length === 0 ? null : { basisStep: ctx.step, steps: [] as Array<{ step: number; points: Array<{ value: number; pc1: number; pc2: number }> }> };
  for (const step of pcaSteps ? opts.steps : []) {
    const other = ctx.model(step);
    const X = tokRows(await other.getParam("embed.tok.weight"));
    const mean = new Float64Array(C);
    for (let i = 0; i < zoomIds.length; i++) for (let c = 0; c < C; c++) mean[c]! += X[i * C + c]! / zoomIds.length;
    const s = project(X, zoomIds.length, C, { mean, components: tp.components });
    pcaSteps!.steps.push({ step, points: zoomVals.map((value, i) => ({ value, pc1: s[i * 2]!, pc2: s[i * 2 + 1]! })) });
  }

  // ---- position embeddings: t-SNE and clustering
  const P = Float64Array.from((await model.getParam("embed.pos.weight")).subarray(0, T * C));
  const perplexity = Math.min(opts.perplexity, (T - 1) / 3);
  const Y2 = tsne(P, T, C, ctx.seed + 2, perplexity, opts.tsneIterations, opts.tsneLearningRate);
  const cols = Array.from({ length: T }, (_, t) => t % n);
  const rows = Array.from({ length: T }, (_, t) => Math.floor(t / n));
  const clustering = (labels: number[], per: number): Clustering => ({
    nn2d: nnSameRate(Y2, T, 2, labels), nnOrig: nnSameRate(P, T, C, labels),
    silhouette2d: silhouette(Y2, T, 2, labels), silhouetteOrig: silhouette(P, T, C, labels),
    nnChance: (per - 1) / (T - 1),
  });
  const byCol = clustering(cols, m), byRow = clustering(rows, n);
  const posPoints = Array.from({ length: T }, (_, t) => ({ pos: t, row: rows[t]!, col: cols[t]!, x: Y2[t * 2]!, y: Y2[t * 2 + 1]! }));
  findings.push(
    `position t-SNE: nearest neighbour in the same column ${f(byCol.nn2d)} (original space ${f(byCol.nnOrig)}, chance ${f(byCol.nnChance)}), silhouette by column ${f(byCol.silhouette2d)}; ` +
    `same row ${f(byRow.nn2d)} (original ${f(byRow.nnOrig)}, chance ${f(byRow.nnChance)})`,
  );

  // ---- loss with permuted position embeddings
  const batch = sampleBatch(new Rng(ctx.seed), ctx.data, opts.matrices);
  const prng = new Rng(ctx.seed + 1);
  const perms = Array.from({ length: opts.permutations }, () => permutation(prng, T));
  const { unpermuted, runs } = await permutedLosses(model, batch, perms, opts.batch);
  const keys = ["loss", "loss_mask", "loss_obs"] as const;
  const stat = (k: "mean" | "sd") => Object.fromEntries(keys.map((key) => [key, runs.length ? meanSd(runs.map((r) => r[key]))[k] : NaN])) as unknown as Loss;
  const permStats = { matrices: opts.matrices, permutations: opts.permutations, unpermuted, mean: stat("mean"), sd: stat("sd"), runs };
  if (runs.length) {
    findings.push(
      `permuted position embeddings (${runs.length} permutations): L ${f(permStats.mean.loss)} ± ${f(permStats.sd.loss)} vs ${f(unpermuted.loss)} unpermuted ` +
      `(L_mask ${f(permStats.mean.loss_mask)} vs ${f(unpermuted.loss_mask)}, L_obs ${f(permStats.mean.loss_obs)} vs ${f(unpermuted.loss_obs)})`,
    );
  }

  // ---- figures
  const normRows = values.map((value, i) => ({ value, norm: norms[i]! }));
  const normPanel = (lo: number, hi: number, title: string) => ({
    title, width: 320, height: 220,
    data: { values: normRows.filter((r) => r.value >= lo && r.value <= hi) },
    mark: { type: "line", strokeWidth: 1 },
    encoding: {
      x: { field: "value", type: "quantitative", title: "value v", scale: { domain: [lo, hi] } },
      y: { field: "norm", type: "quantitative", title: "‖token embedding‖", scale: { zero: false } },
    },
  });
  const figures: AnalysisOutput["figures"] = [
    { name: "token-norm", spec: { $schema: SCHEMA, title: "token-embedding norm vs value", hconcat: [normPanel(-10, 10, "all values"), normPanel(-ZOOM, ZOOM, `zoom −${ZOOM}…${ZOOM}`)] } as VlSpec },
    {
      name: "token-pca",
      spec: {
        $schema: SCHEMA, title: `PCA of token embeddings of values −${ZOOM}…${ZOOM}`, width: 360, height: 300,
        data: { values: tokPoints }, mark: { type: "circle", size: 30 },
        encoding: {
          x: { field: "pc1", type: "quantitative", title: `PC1 (${(100 * tp.explained[0]!).toFixed(1)}%)` },
          y: { field: "pc2", type: "quantitative", title: `PC2 (${(100 * tp.explained[1]!).toFixed(1)}%)` },
          color: { field: "value", type: "quantitative", scale: { scheme: "redblue", domainMid: 0 }, title: "value" },
        },
      } as VlSpec,
    },
    {
      name: "position-tsne",
      spec: {
        $schema: SCHEMA, title: `t-SNE of the ${T} position embeddings (perplexity ${perplexity.toPrecision(3)})`,
        data: { values: posPoints },
        hconcat: (["col", "row"] as const).map((lab) => ({
          title: `coloured by ${lab === "col" ? "column" : "row"}`, width: 300, height: 260,
          layer: [
            { mark: { type: "circle", size: 80 }, encoding: { x: { field: "x", type: "quantitative", title: "t-SNE 1" }, y: { field: "y", type: "quantitative", title: "t-SNE 2" }, color: { field: lab, type: "nominal", title: lab === "col" ? "column" : "row" } } },
            { mark: { type: "text", fontSize: 8, dy: -8 }, encoding: { x: { field: "x", type: "quantitative" }, y: { field: "y", type: "quantitative" }, text: { field: "pos" } } },
          ],
        })),
      } as VlSpec,
    },
  ];
  if (runs.length) {
    const bars = keys.flatMap((key) => [
      { measure: key, which: "unpermuted", value: unpermuted[key], lo: unpermuted[key], hi: unpermuted[key] },
      { measure: key, which: "permuted", value: permStats.mean[key], lo: permStats.mean[key] - permStats.sd[key], hi: permStats.mean[key] + permStats.sd[key] },
    ]).filter((r) => Number.isFinite(r.value));
    figures.push({
      name: "permutation",
      spec: {
        $schema: SCHEMA, title: `loss with permuted position embeddings (mean ± sd of ${runs.length})`,
        data: { values: bars },
        facet: { column: { field: "measure", type: "nominal", title: null } },
        spec: {
          width: 120, height: 220,
          layer: [
            { mark: "bar", encoding: { x: { field: "which", type: "nominal", title: null }, y: { field: "value", type: "quantitative", title: "MSE" }, color: { field: "which", type: "nominal", legend: null } } },
            { mark: "errorbar", encoding: { x: { field: "which", type: "nominal" }, y: { field: "lo", type: "quantitative" }, y2: { field: "hi" } } },
          ],
        },
      } as VlSpec,
    });
  }
  if (pcaSteps) {
    figures.push({
      name: "pca-steps",
      spec: {
        $schema: SCHEMA, title: `token embeddings of values −${ZOOM}…${ZOOM} in the PC basis of step ${ctx.step}`,
        data: { values: pcaSteps.steps.flatMap((s) => s.points.map((p) => ({ step: s.step, ...p }))) },
        facet: { field: "step", type: "ordinal", title: "step" }, columns: 4,
        spec: {
          width: 180, height: 160, mark: { type: "circle", size: 12 },
          encoding: {
            x: { field: "pc1", type: "quantitative", title: "PC1" }, y: { field: "pc2", type: "quantitative", title: "PC2" },
            color: { field: "value", type: "quantitative", scale: { scheme: "redblue", domainMid: 0 }, title: "value" },
          },
        },
      } as VlSpec,
    });
  }

  return {
    json: {
      tokenNorm: { values, norms, symmetry },
      tokenPca: { explained: Array.from(tp.explained), corr, points: tokPoints },
      ...(pcaSteps ? { pcaSteps } : {}),
      positions: { perplexity, iterations: opts.tsneIterations, learningRate: opts.tsneLearningRate, points: posPoints, column: byCol, row: byRow },
      permutation: permStats,
    },
    figures,
    findings,
  };
}

export const experiment: Experiment<typeof EmbeddingsOptionsSchema> = {
  name: "embeddings",
  summary: "token-embedding norms and PCA, position t-SNE, permuted positions",
  whyNot: { gpt: "it reads the BERT's value-token and position embeddings (embed.tok, embed.pos: one position per cell); the GPT's learned positions span the 2·m·n tokens of [masked X, SEP, X]" },
  options: EmbeddingsOptionsSchema,
  steps: "post",
  batchPerPass: true,
  run: (ctx, o, run) => embeddings(ctx, run && o.steps.length === 0 ? { ...o, steps: run.steps.filter((s) => s <= ctx.step) } : o),
};
