// Experiment 11, ood: the model out of distribution (SPEC §4), next to
// nuclear-norm minimisation on the same matrices.
//
// Each variant changes ctx.data: factor law (uniform/gaussian/laplace), rank,
// p_mask, or size m×n (only sizes with m·n ≤ the model's positions). For each,
// `matrices` matrices are drawn with new Rng(ctx.seed) (values outside the
// vocabulary are clamped in the tokens, never in the targets), BERT's L,
// L_mask, L_obs are measured and NNM (nnm-solver.ts) completes the same
// masked matrices. The default list (variants = null) is derived from
// ctx.data: the base config; the two other factor laws; ranks 1..min(m,n,4);
// p_mask 0.1…0.6 step 0.1; sizes (m, n±1), (m±1, n).
//
// JSON schema:
//   matrices, positions (of the model)
//   rows: per variant { name, kind ("base" | "factor" | "rank" | "p_mask" | "size" | a "+"-joined mix),
//     m, n, rank, pMask, factor, hiddenCells,
//     loss, loss_mask, loss_obs        (BERT, MSE vs the rounded X)
//     nnm_mse_hidden                   (NNM completion, hidden cells)
//     ratio                            loss_mask / nnm_mse_hidden
//     bert_wins                        fraction of matrices where BERT's hidden-cell error < NNM's
//     nnm_unconverged }

import { z } from "zod";
import { type DataConfig, type Factor, sampleBatch, validateDataConfig } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import type { AnalysisContext, AnalysisOutput } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { checkCount, compareWithNnm } from "./nnm.js";

/** Changes to ctx.data; missing fields keep the run's value. */
export interface OodVariant {
  name?: string;
  m?: number;
  n?: number;
  rank?: number;
  pMask?: number;
  factor?: Factor;
}

export const OodOptionsSchema = z.object({
  /** matrices per variant */
  matrices: count(128),
  /** the variants (JSON, checked by the experiment; null (default): derived from ctx.data, see defaultVariants) */
  variants: z.array(z.custom<OodVariant>()).nullable().default(null),
});
export type OodOptions = z.output<typeof OodOptionsSchema>;
export const OOD_DEFAULTS: OodOptions = OodOptionsSchema.parse({});

const FACTORS: Factor[] = ["uniform", "gaussian", "laplace"];

export function defaultVariants(d: DataConfig, positions: number): OodVariant[] {
  const v: OodVariant[] = [{}];
  for (const factor of FACTORS) if (factor !== d.factor) v.push({ factor });
  for (let r = 1; r <= Math.min(d.m, d.n, 4); r++) if (r !== d.rank) v.push({ rank: r });
  for (let k = 1; k <= 6; k++) {
    const p = k / 10;
    if (Math.abs(p - d.pMask) > 1e-9) v.push({ pMask: p });
  }
  for (const [m, n] of [[d.m, d.n - 1], [d.m, d.n + 1], [d.m - 1, d.n], [d.m + 1, d.n]] as const) {
    if (Math.min(m, n) >= d.rank && m * n <= positions) v.push({ m, n });
  }
  return v;
}

function kindOf(d: DataConfig, v: DataConfig): string {
  const k: string[] = [];
  if (v.factor !== d.factor) k.push("factor");
  if (v.rank !== d.rank) k.push("rank");
  if (Math.abs(v.pMask - d.pMask) > 1e-9) k.push("p_mask");
  if (v.m !== d.m || v.n !== d.n) k.push("size");
  return k.length ? k.join("+") : "base";
}

function nameOf(kind: string, v: DataConfig): string {
  switch (kind) {
    case "base": return "base";
    case "factor": return v.factor;
    case "rank": return `rank ${v.rank}`;
    case "p_mask": return `p_mask ${v.pMask}`;
    case "size": return `${v.m}×${v.n}`;
    default: return `${v.m}×${v.n} r${v.rank} p${v.pMask} ${v.factor}`;
  }
}

export async function ood(ctx: AnalysisContext, opts: OodOptions): Promise<AnalysisOutput> {
  checkCount("matrices", opts.matrices);
  const model = ctx.model();
  const positions = model.cfg.positions;
  const variants = opts.variants ?? defaultVariants(ctx.data, positions);
  if (variants.length === 0) throw new AbruptError("ood: the variant list is empty");

  const configs = variants.map((v, i) => {
    if (v.factor !== undefined && !FACTORS.includes(v.factor)) {
      throw new AbruptError(`ood variant ${i}: factor must be one of ${FACTORS.join(", ")} (got "${v.factor}")`);
    }
    const data: DataConfig = {
      ...ctx.data, clamp: true,
      ...(v.m !== undefined ? { m: v.m } : {}), ...(v.n !== undefined ? { n: v.n } : {}),
      ...(v.rank !== undefined ? { rank: v.rank } : {}), ...(v.pMask !== undefined ? { pMask: v.pMask } : {}),
      ...(v.factor !== undefined ? { factor: v.factor } : {}),
    };
    try {
      validateDataConfig(data);
    } catch (e) {
      throw new AbruptError(`ood variant ${i}: ${(e as Error).message}`);
    }
    if (!(data.pMask > 0)) throw new AbruptError(`ood variant ${i}: p_mask must be > 0 (got ${data.pMask})`);
    if (data.m * data.n > positions) {
      throw new AbruptError(`ood variant ${i}: ${data.m}×${data.n} needs ${data.m * data.n} positions, the model has ${positions}`);
    }
    const kind = kindOf(ctx.data, data);
    return { data, kind, name: v.name ?? nameOf(kind, data) };
  });

  const rows = [];
  for (const { data, kind, name } of configs) { // one at a time: a model runs one pass at a time
    const batch = sampleBatch(new Rng(ctx.seed), data, opts.matrices);
    const c = await compareWithNnm(model, batch, false);
    rows.push({
      name, kind, m: data.m, n: data.n, rank: data.rank, pMask: data.pMask, factor: data.factor,
      hiddenCells: c.hiddenCells,
      loss: c.bert.loss, loss_mask: c.bert.loss_mask, loss_obs: c.bert.loss_obs,
      nnm_mse_hidden: c.nnmMse, ratio: c.bert.loss_mask / c.nnmMse,
      bert_wins: c.bertWins, nnm_unconverged: c.nnmUnconverged,
    });
  }

  const f = (x: number) => x.toPrecision(3);
  const findings: string[] = [];
  const kinds = [...new Set(rows.map((r) => r.kind))];
  for (const k of kinds) {
    const sel = rows.filter((r) => r.kind === k);
    if (k === "base") {
      for (const r of sel) findings.push(`in distribution (${r.m}×${r.n}, rank ${r.rank}, p_mask ${r.pMask}, ${r.factor}): BERT L_mask ${f(r.loss_mask)} vs NNM MSE ${f(r.nnm_mse_hidden)}`);
    } else {
      findings.push(`${k} — BERT L_mask vs NNM MSE: ${sel.map((r) => `${r.name}: ${f(r.loss_mask)} vs ${f(r.nnm_mse_hidden)}`).join("; ")}`);
    }
  }
  const finite = rows.filter((r) => Number.isFinite(r.ratio));
  if (finite.length) {
    const below = finite.filter((r) => r.ratio < 1).length;
    const worst = finite.reduce((a, r) => (r.ratio > a.ratio ? r : a));
    findings.push(`BERT below NNM in ${below} of ${finite.length} variants; furthest above: ${worst.name} (${f(worst.ratio)}× NNM)`);
  }

  const points = rows.flatMap((r) => [
    { variant: r.name, method: "BERT (L_mask)", mse: r.loss_mask },
    { variant: r.name, method: "NNM", mse: r.nnm_mse_hidden },
  ]).filter((p) => Number.isFinite(p.mse) && p.mse > 0);
  const d = ctx.data;
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: "out of distribution: BERT vs nuclear-norm minimisation",
      subtitle: `trained on ${d.m}×${d.n}, rank ${d.rank}, p_mask ${d.pMask}, ${d.factor}; ${opts.matrices} matrices per variant`,
    },
    width: { step: 40 }, height: 280,
    data: { values: points },
    mark: { type: "point", filled: true, size: 70 },
    encoding: {
      x: { field: "variant", type: "nominal", sort: rows.map((r) => r.name), title: "variant", axis: { labelAngle: -45 } },
      xOffset: { field: "method", type: "nominal" },
      y: { field: "mse", type: "quantitative", scale: { type: "log" }, title: "MSE at hidden cells" },
      color: { field: "method", type: "nominal", title: null },
      shape: { field: "method", type: "nominal", title: null },
    },
  } as VlSpec;

  return { json: { matrices: opts.matrices, positions, rows }, figures: [{ name: "variants", spec }], findings };
}

export const experiment: Experiment<typeof OodOptionsSchema> = {
  name: "ood",
  summary: "out of distribution: factors, ranks, p_mask, sizes; BERT vs NNM",
  whyNot: { gpt: "it changes the matrix size and distribution and compares with nuclear-norm minimisation; the GPT's block size fixes m·n and its vocabulary clamps values to [-2, 2]" },
  options: OodOptionsSchema,
  steps: "post",
  dashboard: false, // many data variants and NNM: an `abrupt analyze` job, not a page request
  run: (ctx, o) => ood(ctx, o),
};
