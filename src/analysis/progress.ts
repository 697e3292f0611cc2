// Experiment 12, plateau progress measures (SPEC §5, after Gopalani & Hu,
// "What Happens During the Loss Plateau?"), per checkpoint, on one batch:
//
// - attention progress: for each hidden query cell q = (i, j), the mass its
//   attention row puts on the OBSERVED cells of row i and column j (the
//   "optimal positions"; q itself is hidden so never among them), divided
//   by the row's total mass (1 after softmax). Averaged over the hidden
//   query cells that have at least one such observed cell; reported per
//   layer × head, as the best head per layer (max over heads of the head
//   means), and as the mean over all layers and heads. Reference: the
//   value uniform attention would give, mean |optimal(q)| / (m·n).
// - hidden-state collapse: mean pairwise cosine similarity of the final
//   hidden states (`blocks.{L-1}.ln2.out`) over the positions of a
//   sample (all pairs t < t' of nonzero states), averaged over samples.
// - repetition: fraction of adjacent tokens (t, t+1 in the row-major
//   sequence, so across row ends too) whose outputs are equal after
//   rounding to the data's precision (2 decimals), averaged over samples.
// The per-array definitions live in measures.ts, shared with the trainer's
// --progress-every measures.
// All read through hooks/activations of one forward pass (`progressAt`,
// which the trainer can call at checkpoint steps). The batch: `matrices`
// matrices from Rng(ctx.seed), the same for every checkpoint.
//
// JSON:
//   matrices: number
//   steps: {step, attnProgress, attnMaxHead: number[L], attnByHead: number[L][H],
//           attnUniform, queries, collapse, repetition,
//           loss, loss_mask, loss_obs            (this batch)
//           trainLoss, trainLossMask, metricsStep (the metrics line nearest the
//                                                 step, when `metrics` is given; else null)}[]
// Figure: progress (top: measures vs step; bottom: losses vs step, log scale).
//
// On a GPT run (gptProgressAt), by teacher forcing on the same matrices: the
// attention progress of the position generating each hidden cell (position
// m·n + i·n + j, gpt-common.ts) on the prompt's observed cells of row i and
// column j, uniform reference mean |optimal| / (q + 1) (causal attention sees
// q + 1 keys); collapse over the m·n generating positions of `ln_f.out`;
// repetition of adjacent argmax tokens there; and loss, loss_mask, loss_obs
// the cross-entropies at the answer positions.

import { z } from "zod";
import { type Batch, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import type { GptBatch } from "../data/sequence.js";
import { type AnalysisContext, type AnalysisOutput, type AnyBert, type AnyGpt, gptOf } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { answerScores, generatingKeys, sampleGpt } from "./gpt-common.js";
import { addAttnMass, collapseSum, optimalKeys, queryCount, repetitionSum } from "./measures.js";

export const ProgressOptionsSchema = z.object({
  /** checkpoint steps ([]: only ctx.step; with a run, `abrupt analyze` takes all of them); more than one needs a run */
  steps: z.array(z.number()).default([]),
  /** matrices in the batch */
  matrices: count(256),
  /** matrices per forward pass */
  batch: count(64),
});
export type ProgressOptions = z.output<typeof ProgressOptionsSchema> & {
  /** the run's metrics lines, to plot the training loss at each step (optional) */
  metrics?: Array<{ step: number; loss: number; loss_mask: number }>;
};
export const PROGRESS_DEFAULTS: ProgressOptions = ProgressOptionsSchema.parse({});

export interface ProgressMeasures {
  /** mean over layers and heads of the attention progress */
  attnProgress: number;
  /** per layer, the best head's attention progress */
  attnMaxHead: number[];
  /** [L][H] attention progress of each head */
  attnByHead: number[][];
  /** what uniform attention would score */
  attnUniform: number;
  /** hidden query cells counted (those with an observed cell in their row or column) */
  queries: number;
  collapse: number;
  repetition: number;
  loss: number;
  loss_mask: number;
  loss_obs: number;
}

/** Running sums of the measures, so batches can be split into chunks. */
interface Sums {
  mass: Float64Array; // [L*H]
  uniform: number;
  queries: number;
  collapse: number;
  repetition: number;
  samples: number;
  se: number; seM: number; nM: number; n: number;
}

async function progressSums(model: AnyBert, batch: Batch, prec: number): Promise<Sums> {
  const { L, H, d: C } = model.cfg;
  const { B, T, m, n, hidden, targets } = batch;
  const out = await model.run(batch.tokens, B, T);
  const s: Sums = { mass: new Float64Array(L * H), uniform: 0, queries: 0, collapse: 0, repetition: 0, samples: B, se: 0, seM: 0, nM: 0, n: B * T };

  // losses and repetition from the outputs
  for (let i = 0; i < B * T; i++) {
    const e2 = (out[i]! - targets[i]!) ** 2;
    s.se += e2;
    if (hidden[i]) { s.seM += e2; s.nM++; }
  }
  s.repetition = repetitionSum(out, B, T, prec);

  // optimal positions of each hidden query, then attention mass on them
  const opt = optimalKeys(hidden, B, m, n);
  s.queries = queryCount(opt);
  for (const list of opt) for (const [, ks] of list) s.uniform += ks.length / T;
  for (let l = 0; l < L; l++) {
    addAttnMass(s.mass.subarray(l * H, (l + 1) * H), await model.actHost(`blocks.${l}.attn.pattern`), opt, H, T);
  }

  s.collapse = collapseSum(await model.actHost(L > 0 ? `blocks.${L - 1}.ln2.out` : "embed.out"), B, T, C);
  return s;
}

function addSums(a: Sums | null, b: Sums): Sums {
  if (!a) return b;
  for (let i = 0; i < a.mass.length; i++) a.mass[i]! += b.mass[i]!;
  a.uniform += b.uniform; a.queries += b.queries; a.collapse += b.collapse; a.repetition += b.repetition;
  a.samples += b.samples; a.se += b.se; a.seM += b.seM; a.nM += b.nM; a.n += b.n;
  return a;
}

function finish(s: Sums, L: number, H: number): ProgressMeasures {
  const attnByHead = Array.from({ length: L }, (_, l) => Array.from({ length: H }, (_, h) => (s.queries ? s.mass[l * H + h]! / s.queries : NaN)));
  const all = attnByHead.flat();
  return {
    attnProgress: all.length ? all.reduce((x, y) => x + y, 0) / all.length : NaN,
    attnMaxHead: attnByHead.map((hs) => Math.max(...hs)),
    attnByHead,
    attnUniform: s.queries ? s.uniform / s.queries : NaN,
    queries: s.queries,
    collapse: s.collapse / s.samples,
    repetition: s.repetition / s.samples,
    loss: s.se / s.n,
    loss_mask: s.nM ? s.seM / s.nM : NaN,
    loss_obs: s.n - s.nM ? (s.se - s.seM) / (s.n - s.nM) : NaN,
  };
}

/** The progress measures of a model on one batch (one forward pass; hooks on the model apply). */
export async function progressAt(model: AnyBert, batch: Batch, prec = 2): Promise<ProgressMeasures> {
  return finish(await progressSums(model, batch, prec), model.cfg.L, model.cfg.H);
}

/** progressAt over a batch split into chunks of `chunk` matrices (same numbers, less memory). */
export async function progressChunked(model: AnyBert, batch: Batch, chunk: number, prec = 2): Promise<ProgressMeasures> {
  let s: Sums | null = null;
  const { T } = batch;
  for (let b0 = 0; b0 < batch.B; b0 += chunk) {
    const Bc = Math.min(chunk, batch.B - b0);
    const part: Batch = {
      B: Bc, m: batch.m, n: batch.n, T,
      tokens: batch.tokens.subarray(b0 * T, (b0 + Bc) * T),
      targets: batch.targets.subarray(b0 * T, (b0 + Bc) * T),
      hidden: batch.hidden.subarray(b0 * T, (b0 + Bc) * T),
    };
    s = addSums(s, await progressSums(model, part, prec));
  }
  return finish(s!, model.cfg.L, model.cfg.H);
}

/** The progress measures of a GPT on one batch of sequences (see the header), `chunk` sequences per pass. */
export async function gptProgressAt(model: AnyGpt, batch: GptBatch, chunk = 64): Promise<ProgressMeasures> {
  const { L, H, d: C } = model.cfg;
  const { T, cells } = batch;
  const s: Sums = { mass: new Float64Array(L * H), uniform: 0, queries: 0, collapse: 0, repetition: 0, samples: batch.B, se: 0, seM: 0, nM: 0, n: 0 };
  let seO = 0, nO = 0;
  for (let b0 = 0; b0 < batch.B; b0 += chunk) {
    const nb = Math.min(chunk, batch.B - b0);
    const part: GptBatch = {
      ...batch, B: nb,
      inputs: batch.inputs.subarray(b0 * T, (b0 + nb) * T), targets: batch.targets.subarray(b0 * T, (b0 + nb) * T),
      values: batch.values.subarray(b0 * cells, (b0 + nb) * cells), hidden: batch.hidden.subarray(b0 * cells, (b0 + nb) * cells),
    };
    const logits = await model.run(part.inputs, nb, T);
    const a = answerScores(logits, part);
    let nMask = 0;
    for (let i = 0; i < part.hidden.length; i++) nMask += part.hidden[i]!;
    const nObs = nb * cells - nMask;
    if (nMask) { s.seM += a.loss_mask * nMask; s.nM += nMask; }
    if (nObs) { seO += a.loss_obs * nObs; nO += nObs; }
    // argmax tokens at the generating positions, for the repetition
    const V = logits.length / (nb * T);
    const arg = new Float32Array(nb * cells);
    for (let b = 0; b < nb; b++) {
      for (let k = 0; k < cells; k++) {
        const row = (b * T + cells + k) * V;
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[row + v]! > logits[row + best]!) best = v;
        arg[b * cells + k] = best;
      }
    }
    s.repetition += repetitionSum(arg, nb, cells, 0);
    const opt = generatingKeys(part);
    s.queries += queryCount(opt);
    for (const list of opt) for (const [q, ks] of list) s.uniform += ks.length / (q + 1);
    for (let l = 0; l < L; l++) addAttnMass(s.mass.subarray(l * H, (l + 1) * H), await model.actHost(`blocks.${l}.attn.pattern`), opt, H, T);
    const fin = await model.actHost("ln_f.out"); // [nb, T, C] → the generating positions [nb, cells, C]
    const gen = new Float32Array(nb * cells * C);
    for (let b = 0; b < nb; b++) gen.set(fin.subarray((b * T + cells) * C, (b * T + 2 * cells) * C), b * cells * C);
    s.collapse += collapseSum(gen, nb, cells, C);
  }
  const p = finish(s, L, H);
  return { ...p, loss: (s.seM + seO) / (s.nM + nO), loss_mask: s.nM ? s.seM / s.nM : NaN, loss_obs: nO ? seO / nO : NaN };
}

function nearestLine(metrics: ProgressOptions["metrics"], step: number) {
  if (!metrics || metrics.length === 0) return null;
  let best = metrics[0]!;
  for (const l of metrics) if (Math.abs(l.step - step) < Math.abs(best.step - step)) best = l;
  return best;
}

export async function progress(ctx: AnalysisContext, opts: ProgressOptions = PROGRESS_DEFAULTS): Promise<AnalysisOutput> {
  const posInt = (x: number) => Number.isInteger(x) && x > 0;
  if (!Array.isArray(opts.steps) || opts.steps.some((s) => !Number.isInteger(s) || s < 0)) throw new AbruptError(`progress: steps must be checkpoint step numbers (got ${JSON.stringify(opts.steps)})`);
  if (!posInt(opts.matrices)) throw new AbruptError(`progress: matrices must be a positive integer (got ${opts.matrices})`);
  if (!posInt(opts.batch)) throw new AbruptError(`progress: batch must be a positive integer (got ${opts.batch})`);
  if (opts.steps.length > 0 && ctx.source.kind !== "run") throw new AbruptError("progress: steps (several checkpoints) needs a run directory, not a lone checkpoint");
  const steps = opts.steps.length ? [...new Set(opts.steps)].sort((a, b) => a - b) : [ctx.step];
  const gpt = ctx.family === "gpt";
  const measure = gpt
    ? ((b: GptBatch) => async (step: number) => gptProgressAt(gptOf(ctx, step), b, opts.batch))(sampleGpt(ctx, opts.matrices))
    : ((b: Batch) => async (step: number) => {
      const model = ctx.model(step);
      if (model.cfg.L === 0) throw new AbruptError("progress: the model has no layers, so no attention to measure");
      return progressChunked(model, b, opts.batch, ctx.data.prec);
    })(sampleBatch(new Rng(ctx.seed), ctx.data, opts.matrices));

  const rows: Array<ProgressMeasures & { step: number; trainLoss: number | null; trainLossMask: number | null; metricsStep: number | null }> = [];
  for (const step of steps) {
    const p = await measure(step);
    const line = nearestLine(opts.metrics, step);
    rows.push({ step, ...p, trainLoss: line ? line.loss : null, trainLossMask: line ? line.loss_mask : null, metricsStep: line ? line.step : null });
  }

  const f = (x: number | null) => (x === null || !Number.isFinite(x) ? "n/a" : x.toPrecision(3));
  // a GPT's loss here is the teacher-forced cross-entropy at the answer's cells, not the training loss over all positions
  const [lName, lmName] = gpt ? ["answer CE", "at hidden cells"] : ["L", "L_mask"];
  const describe = (r: (typeof rows)[number]) => {
    const bestL = r.attnMaxHead.reduce((a, x, l) => (x > r.attnMaxHead[a]! ? l : a), 0);
    return `step ${r.step}: attention progress ${f(r.attnProgress)} (uniform ${f(r.attnUniform)}; best head ${f(r.attnMaxHead[bestL]!)} in layer ${bestL}), ` +
      `collapse ${f(r.collapse)}, repetition ${f(r.repetition)}, ${lName} ${f(r.loss)} (${lmName} ${f(r.loss_mask)})`;
  };
  const findings = [describe(rows[0]!)];
  if (rows.length > 1) {
    findings.push(describe(rows[rows.length - 1]!));
    let k = 1;
    for (let i = 1; i < rows.length; i++) if (rows[i]!.attnProgress - rows[i - 1]!.attnProgress > rows[k]!.attnProgress - rows[k - 1]!.attnProgress) k = i;
    findings.push(`largest rise of attention progress between steps ${rows[k - 1]!.step} and ${rows[k]!.step} (${f(rows[k - 1]!.attnProgress)} → ${f(rows[k]!.attnProgress)}); ${lName} ${f(rows[k - 1]!.loss)} → ${f(rows[k]!.loss)}`);
  }

  const measureRows = rows.flatMap((r) => [
    { step: r.step, series: "attention: mean over heads", value: r.attnProgress },
    ...r.attnMaxHead.map((v, l) => ({ step: r.step, series: `attention: layer ${l}, best head`, value: v })),
    { step: r.step, series: "attention: uniform reference", value: r.attnUniform },
    { step: r.step, series: "hidden-state collapse", value: r.collapse },
    { step: r.step, series: "repetition", value: r.repetition },
  ]).filter((r) => Number.isFinite(r.value));
  const lossRows = rows.flatMap((r) => [
    { step: r.step, series: "L (this batch)", value: r.loss },
    { step: r.step, series: "L_mask (this batch)", value: r.loss_mask },
    ...(r.trainLoss !== null ? [{ step: r.step, series: "L (training)", value: r.trainLoss }] : []),
    ...(r.trainLossMask !== null ? [{ step: r.step, series: "L_mask (training)", value: r.trainLossMask }] : []),
  ]).filter((r) => Number.isFinite(r.value) && r.value > 0);
  const x = { field: "step", type: "quantitative", title: "step" };
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "plateau progress measures and loss over training",
    vconcat: [
      {
        width: 600, height: 260, data: { values: measureRows }, mark: { type: "line", point: true },
        encoding: { x, y: { field: "value", type: "quantitative", title: "measure", scale: { domain: [0, 1] } }, color: { field: "series", type: "nominal", title: null, legend: { labelLimit: 300 } } },
      },
      {
        width: 600, height: 200, data: { values: lossRows }, mark: { type: "line", point: true },
        encoding: { x, y: { field: "value", type: "quantitative", title: gpt ? "cross-entropy (answer positions)" : "MSE", scale: { type: "log" } }, color: { field: "series", type: "nominal", title: null } },
      },
    ],
    resolve: { scale: { color: "independent" } },
  } as VlSpec;
  return { json: { ...(gpt ? { family: "gpt" } : {}), matrices: opts.matrices, steps: rows }, figures: [{ name: "progress", spec }], findings };
}

export const experiment: Experiment<typeof ProgressOptionsSchema> = {
  name: "progress",
  summary: "attention progress, hidden-state collapse, repetition over training",
  options: ProgressOptionsSchema,
  steps: "none",
  batchPerPass: true,
  families: ["bert", "gpt"],
  run: (ctx, o, run) => progress(ctx, run ? {
    ...o,
    steps: o.steps.length === 0 ? run.steps : o.steps,
    metrics: run.metrics.map((l) => ({ step: l.step, loss: l.loss, loss_mask: l.loss_mask })),
  } : o),
};
