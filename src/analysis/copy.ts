// Experiment 2, copy: does the model copy its input? (SPEC §4 "Copy check")
//
// `batch` matrices are drawn from ctx.data with new Rng(ctx.seed). The model
// runs on them as they are (MASK at hidden cells), then once per value v in
// opts.values with every hidden cell's MASK replaced by the token of v. A
// model that copies outputs ≈ v at those cells (before the drop, per the
// paper); one that completes the matrix does not care. Then the same masks
// on random full-rank matrices (entries iid Uniform[-1, 1], rounded to prec,
// drawn from the same Rng after the batch): does it still reproduce the
// observed cells?
//
// Verdict `copying`: for every value |mean output at hidden cells − v| ≤ 0.1,
// and, with two or more distinct values, |slope − 1| ≤ 0.2 (slope of the
// least-squares line of output on v, pooled over hidden cells and values).
//
// JSON schema:
//   matrices, hiddenCells (total), values (the list, as tokenised)
//   mask:   { loss, loss_mask, loss_obs, meanOutHidden, meanAbsOutHidden }  (MASK input, vs the true X)
//   replaced: per value { value, token, meanOut, stdOut, meanAbsErr (|out − v| at hidden cells),
//             replaceMse (mean (out − v)² at hidden cells: the reference code's "mask replace loss"),
//                         loss, loss_mask, loss_obs (vs the true X) }
//   slope, intercept, correlation   (output at hidden cells on v; null with < 2 distinct values)
//   copying (boolean), criterion (string)
//   observedCopy: { meanAbsErr, slope, correlation }  (output vs input at observed cells, MASK input)
//   random: { loss, loss_mask, loss_obs, meanOutHidden, observedCopy: { meanAbsErr, slope, correlation } }

import { familyOf } from "../family/index.js";
import { z } from "zod";
import { MASK_ID, roundTo, sampleBatch, tokenOf, valueOf } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import { type AnalysisContext, type AnalysisOutput, lossSplit } from "./context.js";
import { forwardBatch } from "./forward.js";
import { checkCount } from "./nnm.js";
import { type Experiment, count } from "./experiment.js";
import { detectPhases } from "./phases.js";

export const CopyOptionsSchema = z.object({
  /** values whose tokens replace MASK at hidden cells */
  values: z.array(z.number()).default([0.44, -0.24]),
  /** matrices */
  batch: count(256),
});
export type CopyOptions = z.output<typeof CopyOptionsSchema>;
export const COPY_DEFAULTS: CopyOptions = CopyOptionsSchema.parse({});

/** Least-squares line of y on x, and the correlation (null if x is constant). */
export function fitLine(xs: ArrayLike<number>, ys: ArrayLike<number>): { slope: number | null; intercept: number | null; correlation: number | null } {
  const N = xs.length;
  let sx = 0, sy = 0;
  for (let i = 0; i < N; i++) { sx += xs[i]!; sy += ys[i]!; }
  const mx = sx / N, my = sy / N;
  let sxx = 0, sxy = 0, syy = 0;
  for (let i = 0; i < N; i++) {
    const dx = xs[i]! - mx, dy = ys[i]! - my;
    sxx += dx * dx; sxy += dx * dy; syy += dy * dy;
  }
  if (!(N >= 2) || sxx <= 1e-12 * N) return { slope: null, intercept: null, correlation: null };
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx, correlation: syy > 0 ? sxy / Math.sqrt(sxx * syy) : null };
}

/** Output vs input at observed cells. */
function observedCopy(out: Float32Array, targets: Float32Array, hidden: Uint8Array) {
  const xs: number[] = [], ys: number[] = [];
  let abs = 0;
  for (let i = 0; i < out.length; i++) {
    if (hidden[i]) continue;
    xs.push(targets[i]!); ys.push(out[i]!);
    abs += Math.abs(out[i]! - targets[i]!);
  }
  const { slope, correlation } = fitLine(xs, ys);
  return { meanAbsErr: xs.length ? abs / xs.length : NaN, slope, correlation };
}

export async function copy(ctx: AnalysisContext, opts: CopyOptions): Promise<AnalysisOutput> {
  if (opts.values.length === 0) throw new AbruptError("copy: give at least one value");
  checkCount("batch", opts.batch);
  const tokens = opts.values.map((v) => tokenOf(v, ctx.data.clamp));
  const values = tokens.map(valueOf);
  const model = ctx.model();
  const rng = new Rng(ctx.seed);
  const batch = sampleBatch(rng, ctx.data, opts.batch);
  const { B, T, hidden, targets } = batch;

  // with MASK
  const out0 = await forwardBatch(model, batch);
  let hiddenCells = 0, s0 = 0, a0 = 0;
  for (let i = 0; i < out0.length; i++) if (hidden[i]) { hiddenCells++; s0 += out0[i]!; a0 += Math.abs(out0[i]!); }
  if (hiddenCells === 0) throw new AbruptError(`copy: no hidden cells in ${B} matrices at p_mask ${ctx.data.pMask}; use a larger p_mask or batch`);
  const mask = { ...lossSplit(out0, targets, hidden), meanOutHidden: s0 / hiddenCells, meanAbsOutHidden: a0 / hiddenCells };

  // MASK replaced by each value
  const xs = new Float64Array(hiddenCells * values.length), ys = new Float64Array(hiddenCells * values.length);
  const samples: Array<{ value: number; out: number }> = [];
  const perSample = Math.max(1, Math.floor(hiddenCells / 300));
  let k = 0;
  const replaced = [];
  for (const [vi, v] of values.entries()) {
    const tok = batch.tokens.slice();
    for (let i = 0; i < tok.length; i++) if (hidden[i]) tok[i] = tokens[vi]!;
    const out = await forwardBatch(model, { tokens: tok, B, T });
    let s = 0, s2 = 0, abs = 0, sq = 0, h = 0;
    for (let i = 0; i < out.length; i++) {
      if (!hidden[i]) continue;
      const y = out[i]!;
      s += y; s2 += y * y; abs += Math.abs(y - v); sq += (y - v) ** 2;
      xs[k] = v; ys[k] = y; k++;
      if (h++ % perSample === 0) samples.push({ value: v, out: y });
    }
    const meanOut = s / hiddenCells;
    replaced.push({
      value: v, token: tokens[vi]!, meanOut, stdOut: Math.sqrt(Math.max(0, s2 / hiddenCells - meanOut * meanOut)),
      meanAbsErr: abs / hiddenCells, replaceMse: sq / hiddenCells, ...lossSplit(out, targets, hidden),
    });
  }
  const line = fitLine(xs, ys);
  const distinct = new Set(values).size;
  const meansOk = replaced.every((r) => Math.abs(r.meanOut - r.value) <= 0.1);
  const copying = meansOk && (distinct < 2 || (line.slope !== null && Math.abs(line.slope - 1) <= 0.2));
  const criterion = "|mean output at hidden cells − v| ≤ 0.1 for every v, and |slope − 1| ≤ 0.2 when ≥ 2 distinct values";

  // random full-rank matrices, same masks
  const rTargets = new Float32Array(B * T), rTokens = new Int32Array(B * T);
  for (let i = 0; i < B * T; i++) {
    const v = roundTo(rng.range(-1, 1), ctx.data.prec);
    rTargets[i] = v;
    rTokens[i] = hidden[i] ? MASK_ID : tokenOf(v);
  }
  const outR = await forwardBatch(model, { tokens: rTokens, B, T });
  let sr = 0;
  for (let i = 0; i < outR.length; i++) if (hidden[i]) sr += outR[i]!;
  const random = { ...lossSplit(outR, rTargets, hidden), meanOutHidden: sr / hiddenCells, observedCopy: observedCopy(outR, rTargets, hidden) };
  const obsCopy = observedCopy(out0, targets, hidden);

  const f = (x: number | null) => (x === null ? "n/a" : x.toPrecision(3));
  const at = ctx.step >= 0 ? `step ${ctx.step}: ` : "";
  const perValue = replaced.map((r) => `${r.value} → ${f(r.meanOut)}, MSE to ${r.value} ${f(r.replaceMse)}`).join("; ");
  const findings = [
    copying
      ? `${at}outputs at hidden cells follow the replaced value (slope ${f(line.slope)}; ${perValue}): copying`
      : `${at}outputs at hidden cells do not follow the replaced value (slope ${f(line.slope)}; ${perValue}): not copying`,
    `with MASK: L_mask ${f(mask.loss_mask)} (copy level r/9 = ${f(ctx.data.rank / 9)}), L_obs ${f(mask.loss_obs)}, mean output at hidden cells ${f(mask.meanOutHidden)}`,
    `random full-rank inputs: L_obs ${f(random.loss_obs)}, L_mask ${f(random.loss_mask)}; observed cells copied with slope ${f(random.observedCopy.slope)} (mean |out − in| ${f(random.observedCopy.meanAbsErr)})`,
  ];

  const lo = Math.min(...values) - 0.15, hi = Math.max(...values) + 0.15;
  const means = replaced.map((r) => ({ value: r.value, mean: r.meanOut, lo: r.meanOut - r.stdOut, hi: r.meanOut + r.stdOut }));
  const x = { field: "value", type: "quantitative", title: "value token at hidden cells", scale: { domain: [lo, hi] } };
  const yOf = (field: string) => ({ field, type: "quantitative", title: "model output at hidden cells" });
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `copy check${ctx.step >= 0 ? ` at step ${ctx.step}` : ""}: output at hidden cells vs the value replacing MASK`,
      subtitle: "red: mean ± std; blue: cells; dashed: identity (copying); green: mean output with MASK",
    },
    width: 360, height: 300,
    layer: [
      {
        data: { values: [{ value: lo, y: lo }, { value: hi, y: hi }] },
        mark: { type: "line", color: "#888", strokeDash: [4, 4] },
        encoding: { x, y: yOf("y") },
      },
      {
        data: { values: [{ y: mask.meanOutHidden, label: "MASK (mean)" }] },
        mark: { type: "rule", color: "#54a24b" },
        encoding: { y: yOf("y"), tooltip: { field: "label" } },
      },
      {
        data: { values: samples },
        mark: { type: "point", filled: true, opacity: 0.25, size: 12, color: "#4c78a8" },
        encoding: { x, y: yOf("out") },
      },
      {
        data: { values: means },
        mark: { type: "errorbar", color: "#e45756", ticks: true },
        encoding: { x, y: yOf("lo"), y2: { field: "hi" } },
      },
      {
        data: { values: means },
        mark: { type: "point", filled: true, size: 80, color: "#e45756" },
        encoding: { x, y: yOf("mean") },
      },
    ],
  } as VlSpec;

  return {
    json: {
      matrices: B, hiddenCells, values,
      mask, replaced,
      slope: line.slope, intercept: line.intercept, correlation: line.correlation,
      copying, criterion,
      observedCopy: obsCopy, random,
    },
    figures: [{ name: "values", spec }],
    findings,
  };
}

/**
 * The copy check over training: one row per analysed checkpoint (from the
 * per-step outputs of `copy`), with the drop from `phases` when the run has
 * metrics. Written by `abrupt analyze copy RUN --step all` as
 * copy-over-training.json and its figure.
 *
 * JSON: { drop (step or null), rows: { step, slope, copying, loss_mask, loss_obs (MASK input),
 *         replaceMse: { [value]: mean (out − v)² at hidden cells } }[] }
 */
export function copyOverTraining(per: Array<{ step: number; json: Record<string, unknown> }>, drop: number | null): AnalysisOutput {
  if (per.length < 2) throw new AbruptError("copy over training needs at least two checkpoints");
  type Replaced = { value: number; replaceMse: number };
  const rows = [...per].sort((a, b) => a.step - b.step).map(({ step, json }) => {
    const mask = json["mask"] as { loss_mask: number; loss_obs: number };
    const rep = json["replaced"] as Replaced[];
    return {
      step, slope: json["slope"] as number | null, copying: json["copying"] as boolean,
      loss_mask: mask.loss_mask, loss_obs: mask.loss_obs,
      replaceMse: Object.fromEntries(rep.map((r) => [String(r.value), r.replaceMse])),
    };
  });
  const f = (x: number | null) => (x === null || !Number.isFinite(x) ? "n/a" : x.toPrecision(3));
  const findings: string[] = [];
  const copying = rows.filter((r) => r.copying).length;
  findings.push(`copying (the copy check's criterion) at ${copying} of ${rows.length} checkpoints, steps ${rows[0]!.step}…${rows[rows.length - 1]!.step}`);
  if (drop !== null) {
    const after = rows.filter((r) => r.step > drop && r.slope !== null);
    const before = rows.filter((r) => r.step <= drop && r.slope !== null);
    const range = (rs: typeof rows) => rs.length ? `${f(Math.min(...rs.map((r) => r.slope!)))}…${f(Math.max(...rs.map((r) => r.slope!)))}` : "n/a";
    findings.push(`slope of output on the replaced value: ${range(before)} up to the drop (step ${drop}), ${range(after)} after it (${after.filter((r) => r.copying).length} of ${after.length} checkpoints after the drop still copying)`);
  } else findings.push("no drop found in the run's metrics");

  const values = rows.flatMap((r) => [
    { step: r.step, what: "L_mask with MASK", y: r.loss_mask },
    ...Object.entries(r.replaceMse).map(([v, y]) => ({ step: r.step, what: `MSE to ${v} with ${v} at hidden cells`, y })),
  ]).filter((p) => Number.isFinite(p.y) && p.y > 0);
  const x = { field: "step", type: "quantitative", title: "checkpoint step" };
  const dropLayer = drop === null ? [] : [{ data: { values: [{ step: drop }] }, mark: { type: "rule", color: "#e45756", strokeDash: [4, 4] }, encoding: { x: { field: "step", type: "quantitative" } } }];
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "copy check over training", subtitle: "top: slope of the output at hidden cells on the value replacing MASK (1 = copying); bottom: losses; red dashed: the drop" },
    vconcat: [
      {
        width: 560, height: 160,
        layer: [
          { data: { values: [{ y: 1 }] }, mark: { type: "rule", color: "#888", strokeDash: [2, 2] }, encoding: { y: { field: "y", type: "quantitative" } } },
          { data: { values: rows.filter((r) => r.slope !== null) }, mark: { type: "line", point: true, color: "#4c78a8" }, encoding: { x, y: { field: "slope", type: "quantitative", title: "copy slope" }, tooltip: [{ field: "step" }, { field: "slope", format: ".3f" }] } },
          ...dropLayer,
        ],
      },
      {
        width: 560, height: 160,
        layer: [
          { data: { values }, mark: { type: "line", point: true }, encoding: { x, y: { field: "y", type: "quantitative", scale: { type: "log" }, title: "MSE at hidden cells" }, color: { field: "what", type: "nominal", title: null, legend: { orient: "bottom", labelLimit: 400 } }, tooltip: [{ field: "step" }, { field: "what" }, { field: "y", format: ".3g" }] } },
          ...dropLayer,
        ],
      },
    ],
  } as VlSpec;
  return { json: { drop, rows }, figures: [{ name: "curve", spec }], findings };
}

export const experiment: Experiment<typeof CopyOptionsSchema> = {
  name: "copy",
  summary: "MASK replaced by value tokens, and random full-rank inputs: does the model copy?",
  whyNot: { gpt: "it puts value tokens of the BERT's vocabulary at hidden cells and reads the regression output there; not adapted to the GPT's token prompts yet" },
  options: CopyOptionsSchema,
  steps: "pre",
  run: (ctx, o) => copy(ctx, o),
  summarize: (per, run) => copyOverTraining(per, run ? (detectPhases(run.metrics, run.cfg.data.rank, run.cfg.data.p_mask, familyOf(run.cfg).events).drop?.step ?? null) : null),
};
