// Experiment 3, nnm: BERT versus nuclear-norm minimisation (SPEC §4).
//
// For each p_mask in opts.pMasks, `matrices` matrices of ctx.data's shape,
// rank and factor law are drawn with new Rng(ctx.seed) (the same matrices at
// every p_mask, with nested masks: sampleBatch draws U, V, then one uniform
// per cell). BERT sees the masked matrix; NNM solves min ‖X‖* subject to the
// observed cells (nnm-solver.ts, certified duality gap ≤ tolGap). Optionally
// the regularised problem min ½Σ_obs (X − M)² + λ‖X‖* for each λ in lambdas.
//
// JSON schema:
//   m, n, rank, factor, matrices
//   solver: { algorithm, tolPrimal, tolGap, maxIter, regTolChange }
//   rows: per p_mask {
//     pMask, hiddenCells (total over the matrices),
//     bert_loss, bert_loss_mask, bert_loss_obs   (MSE vs the rounded X; loss_mask = hidden-cell MSE)
//     nnm_mse_hidden                             (MSE of the NNM completion at hidden cells)
//     bert_nuc      mean ‖BERT output‖* (the full output matrix, all cells)
//     bert_nuc_filled  mean ‖·‖* of the output with observed cells set to the input
//     nnm_nuc       mean ‖NNM solution‖*
//     true_nuc      mean ‖X‖* of the (rounded) ground truth
//     bert_wins     fraction of matrices (with ≥ 1 hidden cell) where BERT's hidden-cell
//                   squared error is below NNM's
//     nnm_iters     mean ADMM iterations, nnm_unconverged (count), nnm_max_gap (max relative gap)
//   }
//   regularised: per λ { lambda, rows: per p_mask { pMask, mse_hidden, nuc, unconverged } }
//   (empty when lambdas = [])

import { z } from "zod";
import { type Batch, type DataConfig, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import { type AnalysisContext, type AnalysisOutput, type AnyBert, lossSplit } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { forwardBatch } from "./forward.js";
import { NNM_SOLVER_DEFAULTS, NnmSolver, REG_SOLVER_DEFAULTS, RegNnmSolver, nuclearNorm } from "./nnm-solver.js";

export const NnmOptionsSchema = z.object({
  /** masking probabilities (0.10, 0.15, …, 0.60) */
  pMasks: z.array(z.number()).default(() => Array.from({ length: 11 }, (_, i) => Math.round((0.1 + 0.05 * i) * 100) / 100)),
  /** matrices per p_mask */
  matrices: count(512),
  /** λ of the regularised variant ([] = skip; e.g. [0.01, 0.1]) */
  lambdas: z.array(z.number()).default([]),
});
export type NnmOptions = z.output<typeof NnmOptionsSchema>;
export const NNM_DEFAULTS: NnmOptions = NnmOptionsSchema.parse({});

export function checkCount(name: string, v: number, max = 1_000_000): void {
  if (!(Number.isInteger(v) && v >= 1 && v <= max)) throw new AbruptError(`${name} must be an integer in [1, ${max}] (got ${v})`);
}

export function checkPMask(p: number): void {
  if (!(Number.isFinite(p) && p > 0 && p < 1)) throw new AbruptError(`p_mask values must lie in (0, 1) (got ${p})`);
}

/** BERT and NNM on one batch: the per-batch numbers of a row (shared with ood). */
export interface Comparison {
  hiddenCells: number;
  bert: { loss: number; loss_mask: number; loss_obs: number };
  bertNuc: number;
  bertNucFilled: number;
  nnmMse: number;
  nnmNuc: number;
  trueNuc: number;
  bertWins: number;
  nnmIters: number;
  nnmUnconverged: number;
  nnmMaxGap: number;
}

export async function compareWithNnm(model: AnyBert, batch: Batch, nucOfBert = true): Promise<Comparison> {
  const { B, m, n, T } = batch;
  const out = await forwardBatch(model, batch);
  const bert = lossSplit(out, batch.targets, batch.hidden);
  const solver = new NnmSolver(m, n);
  const Mb = new Float64Array(T), Ob = new Float64Array(T);
  let hiddenCells = 0, nnmSq = 0, nnmNuc = 0, trueNuc = 0, bertNuc = 0, bertNucFilled = 0;
  let wins = 0, withHidden = 0, iters = 0, unconv = 0, maxGap = 0;
  for (let b = 0; b < B; b++) {
    const o = b * T;
    const hid = batch.hidden.subarray(o, o + T);
    for (let i = 0; i < T; i++) Mb[i] = batch.targets[o + i]!;
    const r = solver.solve(Mb, hid);
    iters += r.iters;
    if (!r.converged) unconv++;
    maxGap = Math.max(maxGap, (r.nuc - r.lower) / Math.max(1, r.nuc));
    nnmNuc += r.nuc;
    trueNuc += nuclearNorm(Mb, m, n);
    let eB = 0, eN = 0, h = 0;
    for (let i = 0; i < T; i++) {
      if (!hid[i]) continue;
      h++;
      eB += (out[o + i]! - Mb[i]!) ** 2;
      eN += (r.X[i]! - Mb[i]!) ** 2;
    }
    hiddenCells += h;
    nnmSq += eN;
    if (h > 0) { withHidden++; if (eB < eN) wins++; }
    if (nucOfBert) {
      for (let i = 0; i < T; i++) Ob[i] = out[o + i]!;
      bertNuc += nuclearNorm(Ob, m, n);
      for (let i = 0; i < T; i++) if (!hid[i]) Ob[i] = Mb[i]!;
      bertNucFilled += nuclearNorm(Ob, m, n);
    }
  }
  return {
    hiddenCells, bert,
    bertNuc: bertNuc / B, bertNucFilled: bertNucFilled / B,
    nnmMse: hiddenCells ? nnmSq / hiddenCells : NaN, nnmNuc: nnmNuc / B, trueNuc: trueNuc / B,
    bertWins: withHidden ? wins / withHidden : NaN,
    nnmIters: iters / B, nnmUnconverged: unconv, nnmMaxGap: maxGap,
  };
}

export async function nnm(ctx: AnalysisContext, opts: NnmOptions): Promise<AnalysisOutput> {
  if (opts.pMasks.length === 0) throw new AbruptError("nnm: give at least one p_mask");
  opts.pMasks.forEach(checkPMask);
  checkCount("matrices", opts.matrices);
  for (const l of opts.lambdas) if (!(Number.isFinite(l) && l > 0)) throw new AbruptError(`λ values must be positive (got ${l})`);
  const model = ctx.model();
  const { m, n, rank, factor } = ctx.data;

  const rows: Array<Record<string, number>> = [];
  const reg = opts.lambdas.map((lambda) => ({ lambda, rows: [] as Array<Record<string, number>> }));
  const regSolver = new RegNnmSolver(m, n);
  for (const pMask of opts.pMasks) {
    const data: DataConfig = { ...ctx.data, pMask };
    const batch = sampleBatch(new Rng(ctx.seed), data, opts.matrices);
    const c = await compareWithNnm(model, batch);
    rows.push({
      pMask, hiddenCells: c.hiddenCells,
      bert_loss: c.bert.loss, bert_loss_mask: c.bert.loss_mask, bert_loss_obs: c.bert.loss_obs,
      nnm_mse_hidden: c.nnmMse,
      bert_nuc: c.bertNuc, bert_nuc_filled: c.bertNucFilled, nnm_nuc: c.nnmNuc, true_nuc: c.trueNuc,
      bert_wins: c.bertWins, nnm_iters: c.nnmIters, nnm_unconverged: c.nnmUnconverged, nnm_max_gap: c.nnmMaxGap,
    });
    for (const r of reg) {
      let sq = 0, nuc = 0, unconv = 0;
      const Mb = new Float64Array(batch.T);
      for (let b = 0; b < batch.B; b++) {
        const o = b * batch.T;
        const hid = batch.hidden.subarray(o, o + batch.T);
        for (let i = 0; i < batch.T; i++) Mb[i] = batch.targets[o + i]!;
        const s = regSolver.solve(Mb, hid, r.lambda);
        if (!s.converged) unconv++;
        nuc += s.nuc;
        for (let i = 0; i < batch.T; i++) if (hid[i]) sq += (s.X[i]! - Mb[i]!) ** 2;
      }
      r.rows.push({ pMask, mse_hidden: c.hiddenCells ? sq / c.hiddenCells : NaN, nuc: nuc / batch.B, unconverged: unconv });
    }
  }

  const f = (x: number) => x.toPrecision(3);
  const findings: string[] = [];
  const better = rows.filter((r) => r.bert_loss_mask! < r.nnm_mse_hidden!).map((r) => r.pMask!);
  const worse = rows.filter((r) => !(r.bert_loss_mask! < r.nnm_mse_hidden!)).map((r) => r.pMask!);
  const at = rows.reduce((a, r) => (Math.abs(r.pMask! - ctx.data.pMask) < Math.abs(a.pMask! - ctx.data.pMask) ? r : a), rows[0]!);
  const cmp = `at p_mask ${at.pMask}: ${f(at.bert_loss_mask!)} vs ${f(at.nnm_mse_hidden!)}`;
  if (worse.length === 0) findings.push(`BERT hidden-cell MSE below NNM at every p_mask (${cmp})`);
  else if (better.length === 0) findings.push(`BERT hidden-cell MSE at or above NNM at every p_mask (${cmp})`);
  else findings.push(`BERT hidden-cell MSE below NNM for p_mask ∈ {${better.join(", ")}}, not for {${worse.join(", ")}} (${cmp})`);
  const relDiff = rows.map((r) => (r.bert_nuc! - r.nnm_nuc!) / r.nnm_nuc!);
  const meanRel = relDiff.reduce((a, b) => a + b, 0) / relDiff.length;
  findings.push(`nuclear norm of BERT outputs differs from NNM's by ${(100 * meanRel).toFixed(1)}% on average (at p_mask ${at.pMask}: BERT ${f(at.bert_nuc!)}, NNM ${f(at.nnm_nuc!)}, ground truth ${f(at.true_nuc!)})`);
  const unconv = rows.reduce((a, r) => a + r.nnm_unconverged!, 0);
  if (unconv > 0) findings.push(`NNM: ${unconv} of ${rows.length * opts.matrices} solves hit maxIter before the stated tolerance`);

  const mseRows: Array<{ pMask: number; method: string; value: number }> = [];
  const nucRows: Array<{ pMask: number; method: string; value: number }> = [];
  for (const r of rows) {
    mseRows.push({ pMask: r.pMask!, method: "BERT", value: r.bert_loss_mask! }, { pMask: r.pMask!, method: "NNM", value: r.nnm_mse_hidden! });
    nucRows.push(
      { pMask: r.pMask!, method: "BERT", value: r.bert_nuc! },
      { pMask: r.pMask!, method: "NNM", value: r.nnm_nuc! },
      { pMask: r.pMask!, method: "ground truth", value: r.true_nuc! },
    );
  }
  for (const r of reg) {
    for (const q of r.rows) {
      mseRows.push({ pMask: q.pMask!, method: `NNM λ=${r.lambda}`, value: q.mse_hidden! });
      nucRows.push({ pMask: q.pMask!, method: `NNM λ=${r.lambda}`, value: q.nuc! });
    }
  }
  const panel = (values: typeof mseRows, title: string, y: string, log: boolean) => ({
    title, width: 300, height: 240,
    data: { values: values.filter((v) => Number.isFinite(v.value) && (!log || v.value > 0)) },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "pMask", type: "quantitative", title: "p_mask" },
      y: { field: "value", type: "quantitative", title: y, scale: log ? { type: "log" } : { zero: false } },
      color: { field: "method", type: "nominal", title: null },
    },
  });
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `BERT vs nuclear-norm minimisation (${m}×${n}, rank ${rank}, ${factor}, ${opts.matrices} matrices per p_mask)`,
    hconcat: [
      panel(mseRows, "MSE at hidden cells", "MSE (hidden cells)", true),
      panel(nucRows, "nuclear norm", "mean ‖·‖* (BERT: full output)", false),
    ],
    resolve: { scale: { color: "shared" } },
  } as VlSpec;

  return {
    json: {
      m, n, rank, factor, matrices: opts.matrices,
      solver: {
        algorithm: "ADMM (over-relaxed, residual balancing) with one-sided Jacobi SVD; certified duality gap; regularised: FISTA with restart",
        tolPrimal: NNM_SOLVER_DEFAULTS.tolPrimal, tolGap: NNM_SOLVER_DEFAULTS.tolGap, maxIter: NNM_SOLVER_DEFAULTS.maxIter,
        regTolChange: REG_SOLVER_DEFAULTS.tolChange,
      },
      rows, regularised: reg,
    },
    figures: [{ name: "sweep", spec }],
    findings,
  };
}

export const experiment: Experiment<typeof NnmOptionsSchema> = {
  name: "nnm",
  summary: "nuclear-norm minimisation baseline vs BERT over p_mask 0.10…0.60",
  whyNot: { gpt: "it compares the BERT's real-valued outputs with nuclear-norm minimisation over a sweep of p_mask; the GPT's completion error is its run's eval_mse_mask (greedy decoding)" },
  options: NnmOptionsSchema,
  steps: "post",
  dashboard: false, // a solver over 11 p_mask values: an `abrupt analyze` job, not a page request
  run: (ctx, o) => nnm(ctx, o),
};
