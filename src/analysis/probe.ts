// Experiment 5, linear probes (SPEC §4 "Linear probes"): what each layer's
// hidden state of a cell token holds, read by least squares.
//
// Layers: 0 = `embed.out`, l+1 = `blocks.{l}.ln2.out`. Features of a cell
// token = its C-dim hidden state plus a constant 1 (bias). One probe per
// (model, layer, cell group, target); the groups are hidden cells (MASK
// token) and observed cells, fitted and tested separately since their
// tokens differ. Targets of cell (i, j) of a matrix X (rounded values):
//   value  X_ij                                   (1)
//   row    row i of the masked input (0 at hidden) (n)
//   col    column j of the masked input            (m)
//   sv     top left singular vector of X, sign fixed so that its
//          largest-|.| component is positive       (m)
// Fit: ridge least squares W = (FᵀF + λI)⁻¹FᵀY with λ = ridge · tr(FᵀF)/(C+1)
// (raised tenfold while not positive definite; the λ used is reported). FᵀF
// and FᵀY are accumulated per batch (float32 products of one batch, summed
// in double), so the 2048·m·n training features are never stored.
// Data: `train` matrices then `test` matrices from Rng(ctx.seed). Control:
// the same probes on a randomly initialised model of the same shape
// (HF init, seed ctx.seed + 1).
//
// JSON:
//   layers: string[]                hook name of each probed layer (index = layer)
//   targets: {name, dim}[]
//   train, test, ridge: the options used
//   results: {model: "trained"|"control", layer, hook, group: "hidden"|"observed",
//             target, nTrain, nTest, lambda,
//             mse   (test MSE per component),
//             r2    (1 − SSE/SST on the test set, SST around the test mean),
//             cos   (mean |cos(pred, true)| over test cells whose true vector
//                    is nonzero; null for the scalar target)}[]
// Figures: mse (test MSE per layer, one panel per target), cos (mean |cos|).
//
// On a GPT run: the features of cell (i, j) are the residual stream at the
// position generating it (m·n + i·n + j, gpt-common.ts), read by teacher
// forcing; layers 0 = `embed.out`, l+1 = `blocks.{l}.resid_post`, L+1 =
// `ln_f.out`; the same targets, groups, solver and control (minGPT init,
// seed ctx.seed + 1). JSON adds family: "gpt".

import { z } from "zod";
import { type Batch, type DataConfig, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import { hostKernels } from "../kernels/index.js";
import type { Kernels } from "../kernels/types.js";
import type { VlSpec } from "../viz/plot.js";
import { gptBatchOf } from "../data/sequence.js";
import { type AnalysisContext, type AnalysisOutput, type AnyBert, type AnyGpt, gptOf } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { gramRows, ridgeSolve, symEigen } from "./linalg.js";

export const ProbeOptionsSchema = z.object({
  /** training matrices */
  train: count(2048),
  /** test matrices */
  test: count(256),
  /** matrices per forward pass */
  batch: count(32),
  /** ridge λ relative to the mean diagonal of FᵀF */
  ridge: z.number().default(1e-6),
  /** also probe a randomly initialised model of the same shape */
  control: z.boolean().default(true),
});
export type ProbeOptions = z.output<typeof ProbeOptionsSchema>;
export const PROBE_DEFAULTS: ProbeOptions = ProbeOptionsSchema.parse({});

export type ProbeTarget = "value" | "row" | "col" | "sv";
export const PROBE_TARGETS: ProbeTarget[] = ["value", "row", "col", "sv"];
type Group = "hidden" | "observed";
const GROUPS: Group[] = ["hidden", "observed"];

export interface ProbeResult {
  model: "trained" | "control";
  layer: number;
  hook: string;
  group: Group;
  target: ProbeTarget;
  nTrain: number;
  nTest: number;
  lambda: number;
  mse: number;
  r2: number;
  cos: number | null;
}

export function targetDims(m: number, n: number): Record<ProbeTarget, number> {
  return { value: 1, row: n, col: m, sv: m };
}

/** Top left singular vector of X [m,n] (largest-|.| component positive). */
export function topLeftSingular(X: ArrayLike<number>, m: number, n: number): Float64Array {
  return symEigen(gramRows(X, m, n), m).vectors.slice(0, m);
}

/**
 * Probe targets of every cell of a batch: [B·T, K] with K = 1 + n + m + m,
 * columns value | row | col | sv (in PROBE_TARGETS order).
 */
export function probeTargets(batch: Batch): { Y: Float32Array; K: number } {
  const { B, m, n, T, targets, hidden } = batch;
  const K = 1 + n + m + m;
  const Y = new Float32Array(B * T * K);
  const masked = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    const X = targets.subarray(b * T, (b + 1) * T);
    for (let t = 0; t < T; t++) masked[t] = hidden[b * T + t] ? 0 : X[t]!;
    const sv = topLeftSingular(X, m, n);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const y = Y.subarray((b * T + i * n + j) * K, (b * T + i * n + j + 1) * K);
        y[0] = X[i * n + j]!;
        for (let c = 0; c < n; c++) y[1 + c] = masked[i * n + c]!;
        for (let r = 0; r < m; r++) y[1 + n + r] = masked[r * n + j]!;
        for (let r = 0; r < m; r++) y[1 + n + m + r] = sv[r]!;
      }
    }
  }
  return { Y, K };
}

export function probeLayers(model: AnyBert): string[] {
  return ["embed.out", ...Array.from({ length: model.cfg.L }, (_, l) => `blocks.${l}.ln2.out`)];
}

/** The probed layers of a GPT: embeddings, each block's output, the final LayerNorm. */
export function gptProbeLayers(model: AnyGpt): string[] {
  return ["embed.out", ...Array.from({ length: model.cfg.L }, (_, l) => `blocks.${l}.resid_post`), "ln_f.out"];
}

/** A probed model: its layers' hooks and its features of a batch's cells. */
export interface ProbeReader {
  name: "trained" | "control";
  layers: string[];
  /** feature size */
  C: number;
  /** runs the model on the batch; per layer, the features of each cell [B·m·n, C], cells in the batch's order */
  read(batch: Batch): Promise<Float32Array[]>;
}

function bertReader(name: ProbeReader["name"], model: AnyBert): ProbeReader {
  const layers = probeLayers(model);
  return {
    name, layers, C: model.cfg.d,
    async read(batch) {
      await model.run(batch.tokens, batch.B, batch.T);
      const out: Float32Array[] = [];
      for (const hook of layers) out.push(await model.actHost(hook));
      return out;
    },
  };
}

/** A GPT's features of cell k: its residual stream at the position generating k. */
export function gptReader(name: ProbeReader["name"], model: AnyGpt, clamp: boolean): ProbeReader {
  const layers = gptProbeLayers(model);
  const C = model.cfg.d;
  return {
    name, layers, C,
    async read(batch) {
      const g = gptBatchOf(batch, clamp);
      const { B, T, cells } = g;
      await model.run(g.inputs, B, T);
      const out: Float32Array[] = [];
      for (const hook of layers) {
        const act = await model.actHost(hook); // [B, T, C]
        const f = new Float32Array(B * cells * C);
        for (let b = 0; b < B; b++) f.set(act.subarray((b * T + cells) * C, (b * T + 2 * cells) * C), b * cells * C);
        out.push(f);
      }
      return out;
    },
  };
}

interface Acc { ftf: Float64Array; fty: Float64Array; count: number }

/**
 * Fits and tests the probes of one or more models on the same data. Train
 * then test matrices are drawn from `rng`. Exposed for tests; `probe` wraps it.
 */
export async function runProbes(
  models: Array<{ name: "trained" | "control"; model: AnyBert }>,
  data: DataConfig, kernels: Kernels, rng: Rng,
  opts: Pick<ProbeOptions, "train" | "test" | "batch" | "ridge">,
): Promise<ProbeResult[]> {
  return probeReaders(models.map(({ name, model }) => bertReader(name, model)), data, kernels, rng, opts);
}

/** runProbes for any readers (all with the same layers and feature size). */
export async function probeReaders(
  models: ProbeReader[],
  data: DataConfig, kernels: Kernels, rng: Rng,
  opts: Pick<ProbeOptions, "train" | "test" | "batch" | "ridge">,
): Promise<ProbeResult[]> {
  const { m, n } = data;
  const C = models[0]!.C;
  const P = C + 1;
  const K = 1 + n + m + m;
  const dims = targetDims(m, n);
  const offs: Record<ProbeTarget, number> = { value: 0, row: 1, col: 1 + n, sv: 1 + n + m };
  const layers = models[0]!.layers;
  const acc: Acc[][][] = models.map(() => layers.map(() => GROUPS.map(() => ({ ftf: new Float64Array(P * P), fty: new Float64Array(P * K), count: 0 }))));
  const tmpPP = new Float32Array(P * P);
  const tmpPK = new Float32Array(P * K);

  // rows of each group, features with a trailing 1, gathered from act [N, C]
  const gather = (act: Float32Array, rows: number[]): Float32Array => {
    const F = new Float32Array(rows.length * P);
    rows.forEach((r, i) => {
      F.set(act.subarray(r * C, (r + 1) * C), i * P);
      F[i * P + C] = 1;
    });
    return F;
  };
  const groupRows = (batch: Batch): number[][] => {
    const h: number[] = [], o: number[] = [];
    for (let t = 0; t < batch.hidden.length; t++) (batch.hidden[t] ? h : o).push(t);
    return [h, o];
  };

  for (let done = 0; done < opts.train; done += opts.batch) {
    const Bc = Math.min(opts.batch, opts.train - done);
    const batch = sampleBatch(rng, data, Bc);
    const { Y } = probeTargets(batch);
    const rowsByGroup = groupRows(batch);
    const Yg = rowsByGroup.map((rows) => {
      const out = new Float32Array(rows.length * K);
      rows.forEach((r, i) => out.set(Y.subarray(r * K, (r + 1) * K), i * K));
      return out;
    });
    for (const [mi, reader] of models.entries()) {
      const acts = await reader.read(batch);
      for (const li of layers.keys()) {
        const act = acts[li]!;
        rowsByGroup.forEach((rows, gi) => {
          if (rows.length === 0) return;
          const F = gather(act, rows);
          const a = acc[mi]![li]![gi]!;
          kernels.matmul(tmpPP, F, F, P, P, rows.length, true, false, 1, 0);
          kernels.matmul(tmpPK, F, Yg[gi]!, P, K, rows.length, true, false, 1, 0);
          for (let i = 0; i < tmpPP.length; i++) a.ftf[i]! += tmpPP[i]!;
          for (let i = 0; i < tmpPK.length; i++) a.fty[i]! += tmpPK[i]!;
          a.count += rows.length;
        });
      }
    }
  }

  const solved = acc.map((byLayer) => byLayer.map((byGroup) => byGroup.map((a) => (a.count > 0 ? ridgeSolve(a.ftf, a.fty, P, K, opts.ridge) : null))));

  // test statistics per (model, layer, group): per column sums of error², y, y²; per target |cos| sums
  interface Stat { sse: Float64Array; sy: Float64Array; syy: Float64Array; cos: Float64Array; cosN: Float64Array; count: number }
  const stats: Stat[][][] = models.map(() => layers.map(() => GROUPS.map(() => ({
    sse: new Float64Array(K), sy: new Float64Array(K), syy: new Float64Array(K),
    cos: new Float64Array(PROBE_TARGETS.length), cosN: new Float64Array(PROBE_TARGETS.length), count: 0,
  }))));
  const pred = new Float64Array(K);
  for (let done = 0; done < opts.test; done += opts.batch) {
    const Bc = Math.min(opts.batch, opts.test - done);
    const batch = sampleBatch(rng, data, Bc);
    const { Y } = probeTargets(batch);
    const rowsByGroup = groupRows(batch);
    for (const [mi, reader] of models.entries()) {
      const acts = await reader.read(batch);
      for (const li of layers.keys()) {
        const act = acts[li]!;
        rowsByGroup.forEach((rows, gi) => {
          const sol = solved[mi]![li]![gi];
          if (!sol) return;
          const W = sol.W;
          const s = stats[mi]![li]![gi]!;
          for (const r of rows) {
            pred.fill(0);
            for (let c = 0; c < C; c++) {
              const f = act[r * C + c]!;
              if (f === 0) continue;
              for (let k = 0; k < K; k++) pred[k]! += f * W[c * K + k]!;
            }
            for (let k = 0; k < K; k++) pred[k]! += W[C * K + k]!;
            const y = Y.subarray(r * K, (r + 1) * K);
            for (let k = 0; k < K; k++) {
              s.sse[k]! += (pred[k]! - y[k]!) ** 2;
              s.sy[k]! += y[k]!;
              s.syy[k]! += y[k]! * y[k]!;
            }
            PROBE_TARGETS.forEach((tg, ti) => {
              if (dims[tg] < 2) return;
              let py = 0, pp = 0, yy = 0;
              for (let k = offs[tg]; k < offs[tg] + dims[tg]; k++) { py += pred[k]! * y[k]!; pp += pred[k]! ** 2; yy += y[k]! ** 2; }
              if (yy === 0) return;
              s.cos[ti]! += pp > 0 ? Math.abs(py) / Math.sqrt(pp * yy) : 0;
              s.cosN[ti]!++;
            });
            s.count++;
          }
        });
      }
    }
  }

  const results: ProbeResult[] = [];
  models.forEach(({ name }, mi) => {
    layers.forEach((hook, li) => {
      GROUPS.forEach((group, gi) => {
        const s = stats[mi]![li]![gi]!;
        const sol = solved[mi]![li]![gi];
        PROBE_TARGETS.forEach((target, ti) => {
          let sse = 0, sst = 0;
          for (let k = offs[target]; k < offs[target] + dims[target]; k++) {
            sse += s.sse[k]!;
            sst += s.syy[k]! - (s.count ? s.sy[k]! ** 2 / s.count : 0);
          }
          const ok = sol !== null && s.count > 0;
          results.push({
            model: name, layer: li, hook, group, target,
            nTrain: acc[mi]![li]![gi]!.count, nTest: s.count, lambda: sol ? sol.lambda : NaN,
            mse: ok ? sse / (s.count * dims[target]) : NaN,
            r2: ok && sst > 0 ? 1 - sse / sst : NaN,
            cos: dims[target] < 2 ? null : s.cosN[ti]! > 0 ? s.cos[ti]! / s.cosN[ti]! : NaN,
          });
        });
      });
    });
  });
  return results;
}

function checkOptions(o: ProbeOptions): void {
  const posInt = (x: number) => Number.isInteger(x) && x > 0;
  if (!posInt(o.train)) throw new AbruptError(`probe: train must be a positive integer number of matrices (got ${o.train})`);
  if (!posInt(o.test)) throw new AbruptError(`probe: test must be a positive integer number of matrices (got ${o.test})`);
  if (!posInt(o.batch)) throw new AbruptError(`probe: batch must be a positive integer (got ${o.batch})`);
  if (!(o.ridge > 0 && o.ridge < 1)) throw new AbruptError(`probe: ridge must be in (0, 1) (got ${o.ridge})`);
}

const TARGET_LABEL: Record<ProbeTarget, string> = {
  value: "own value X_ij", row: "row of masked input", col: "column of masked input", sv: "top left singular vector",
};

export async function probe(ctx: AnalysisContext, opts: ProbeOptions = PROBE_DEFAULTS): Promise<AnalysisOutput> {
  checkOptions(opts);
  const readers: ProbeReader[] = [];
  if (ctx.family === "gpt") {
    const model = gptOf(ctx);
    readers.push(gptReader("trained", model, ctx.data.clamp));
    if (opts.control) {
      const ctrl = model.clone(); // the same shape, then minGPT's init
      ctrl.init(ctx.seed + 1);
      readers.push(gptReader("control", ctrl, ctx.data.clamp));
    }
  } else {
    const model = ctx.model();
    readers.push(bertReader("trained", model));
    if (opts.control) {
      const ctrl = model.clone(); // the same shape and attention intervention, then a fresh init
      ctrl.init(ctx.seed + 1);
      readers.push(bertReader("control", ctrl));
    }
  }
  // the least squares run in host memory: on a host backend when the model is on a device
  const lsq = ctx.kernels.host ? (ctx.kernels as Kernels) : hostKernels();
  const results = await probeReaders(readers, ctx.data, lsq, new Rng(ctx.seed), opts);
  const layers = readers[0]!.layers;
  const { m, n } = ctx.data;
  const dims = targetDims(m, n);

  const f = (x: number | null) => (x === null || !Number.isFinite(x) ? "n/a" : x.toPrecision(3));
  const findings: string[] = [];
  const get = (mdl: string, group: Group, target: ProbeTarget) => results.filter((r) => r.model === mdl && r.group === group && r.target === target);
  for (const group of GROUPS) {
    for (const target of PROBE_TARGETS) {
      const tr = get("trained", group, target);
      const score = (r: ProbeResult) => (r.cos ?? r.r2);
      const best = tr.reduce((a, b) => (score(b) > score(a) ? b : a));
      const metric = dims[target] > 1 ? "|cos|" : "R²";
      const ctrlBest = get("control", group, target).reduce<ProbeResult | null>((a, b) => (a === null || score(b) > score(a) ? b : a), null);
      findings.push(
        `${group} cells, ${TARGET_LABEL[target]}: ${metric} ${f(score(tr[0]!))} at layer 0 → ${f(score(tr[tr.length - 1]!))} at layer ${tr.length - 1}` +
        ` (best layer ${best.layer}: ${f(score(best))}, MSE ${f(best.mse)})` +
        (ctrlBest ? `; random-init control best ${f(score(ctrlBest))}` : ""),
      );
    }
  }

  const rows = results.map((r) => ({ layer: r.layer, target: TARGET_LABEL[r.target], series: `${r.group}, ${r.model}`, model: r.model, mse: r.mse, cos: r.cos }));
  const lineSpec = (field: "mse" | "cos", title: string, yTitle: string, data: typeof rows): VlSpec => ({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    data: { values: data.filter((r) => r[field] !== null && Number.isFinite(r[field]) && (field !== "mse" || r.mse > 0)) },
    facet: { column: { field: "target", type: "nominal", title: null, sort: PROBE_TARGETS.map((t) => TARGET_LABEL[t]) } },
    spec: {
      width: 200, height: 180,
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "layer", type: "ordinal", title: "layer (0 = embeddings)" },
        y: { field, type: "quantitative", title: yTitle, ...(field === "mse" ? { scale: { type: "log" } } : { scale: { domain: [0, 1] } }) },
        color: {
          field: "series", type: "nominal", title: "cells, model",
          scale: { domain: ["hidden, trained", "hidden, control", "observed, trained", "observed, control"], range: ["#1f4e99", "#9ecae9", "#d95f02", "#fdbf6f"] },
        },
        strokeDash: { field: "model", type: "nominal", sort: ["trained", "control"], legend: null },
      },
    },
    resolve: { scale: { y: field === "mse" ? "independent" : "shared" } },
  } as VlSpec);
  return {
    json: {
      ...(ctx.family === "gpt" ? { family: "gpt" } : {}),
      layers, targets: PROBE_TARGETS.map((t) => ({ name: t, dim: dims[t] })),
      train: opts.train, test: opts.test, ridge: opts.ridge, results,
    },
    figures: [
      { name: "mse", spec: lineSpec("mse", "linear probes: test MSE per layer", "test MSE (per component)", rows) },
      { name: "cos", spec: lineSpec("cos", "linear probes: mean |cos(predicted, true)| per layer", "mean |cos|", rows) },
    ],
    findings,
  };
}

export const experiment: Experiment<typeof ProbeOptionsSchema> = {
  name: "probe",
  summary: "linear probes per layer: cell value, masked row, top singular vector",
  options: ProbeOptionsSchema,
  steps: "post",
  batchPerPass: true,
  families: ["bert", "gpt"],
  run: (ctx, o) => probe(ctx, o),
};
