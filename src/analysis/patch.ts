// Experiment 7, patch: activation patching between X and −X (SPEC §4, "run
// on −X with the layer-4 attention outputs taken from the run on X, same
// mask; compare outputs to X and to −X").
//
// One batch with random masks. X: the batch as drawn; −X: every value
// negated (tokens of −x at observed cells, MASK at the same hidden cells).
// Pass 1 runs on X and caches every chosen hook's activation; pass 2 runs
// on −X unpatched; then, for each hook alone, a pass on −X with that
// activation replaced by the one cached from X. For every run, the MSE of
// the outputs to X and to −X over all, hidden and observed cells.
//
// JSON schema:
// {
//   batch,
//   hooks: string[],
//   baselines: { x: Run, negX: Run },   // unpatched runs on X and on −X
//   patched: [{ hook } & Run],          // runs on −X with `hook` from X
// }
// Run = { toX: Mse, toNegX: Mse }, Mse = { all, hidden, observed }
//
// On a GPT run (gptPatch): the runs are greedy generations of X's cells from
// [masked X, SEP] (of X, or of −X), and the patched activation is replaced at
// the prompt positions 0..m·n only (masked X and SEP: causal attention makes
// them independent of what is generated, so one teacher-forced pass on X
// gives them exactly); the MSE is that of the decoded values (cells whose
// token is not a value are left out, counted in `nonvalue`). Hooks must be
// per position ([B, T, ·]; not attn.pattern). JSON adds family: "gpt",
// measure, and nonvalue per run.

import { z } from "zod";
import { type Batch, MASK_ID, sampleBatch, tokenOf } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import { type GptBatch, gptBatchOf, gptPrompts, gptValueOf } from "../data/sequence.js";
import { type AnalysisContext, type AnalysisOutput, gptOf } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { forwardBatch, runWithCache, withHooks } from "./forward.js";
import { gptTokens, sampleGpt } from "./gpt-common.js";
import { checkBatchSize, fmt } from "./attention.js";

export const PatchOptionsSchema = z.object({
  /** hook names to patch, each alone; null (default): blocks.{l}.attn.out for every layer */
  hooks: z.array(z.string()).nullable().default(null),
  /** matrices in the batch */
  batch: count(256),
});
export type PatchOptions = z.output<typeof PatchOptionsSchema>;
export const PATCH_DEFAULTS: PatchOptions = PatchOptionsSchema.parse({});

export interface Mse {
  all: number;
  hidden: number;
  observed: number;
}

export interface PatchRun {
  toX: Mse;
  toNegX: Mse;
}

function mse(out: Float32Array, target: Float32Array, hidden: Uint8Array, sign: number): Mse {
  let s = 0, sh = 0, nh = 0;
  for (let i = 0; i < out.length; i++) {
    const e = (out[i]! - sign * target[i]!) ** 2;
    s += e;
    if (hidden[i]) { sh += e; nh++; }
  }
  const no = out.length - nh;
  return { all: s / out.length, hidden: nh ? sh / nh : NaN, observed: no ? (s - sh) / no : NaN };
}

/** The same batch with every value negated (same mask). */
export function negateBatch(batch: Batch, clamp: boolean): Batch {
  const neg: Batch = { ...batch, tokens: new Int32Array(batch.tokens.length), targets: batch.targets.map((v) => -v) };
  for (let i = 0; i < neg.tokens.length; i++) neg.tokens[i] = batch.hidden[i] ? MASK_ID : tokenOf(neg.targets[i]!, clamp);
  return neg;
}

export async function patch(ctx: AnalysisContext, opts: PatchOptions): Promise<AnalysisOutput> {
  checkBatchSize(opts.batch);
  const model = ctx.model();
  const hooks = opts.hooks ?? Array.from({ length: model.cfg.L }, (_, l) => `blocks.${l}.attn.out`);
  if (hooks.length === 0) throw new AbruptError("no hooks to patch");
  const valid = model.hookNames();
  for (const h of hooks) {
    if (!valid.includes(h)) throw new AbruptError(`unknown hook "${h}" (valid: ${valid.join(", ")})`);
  }
  const x = sampleBatch(new Rng(ctx.seed), ctx.data, opts.batch);
  const negX = negateBatch(x, ctx.data.clamp);
  const { B } = x;
  const run = (out: Float32Array): PatchRun => ({ toX: mse(out, x.targets, x.hidden, 1), toNegX: mse(out, x.targets, x.hidden, -1) });

  // pass 1 on X caches every chosen activation ([B, ...]); pass 2 runs on −X
  const { out: xOut, cache } = await runWithCache(model, x, hooks);
  const baselines = { x: run(xOut), negX: run(await forwardBatch(model, negX)) };

  // then on −X with one activation replaced by its value on X
  const patched: Array<{ hook: string } & PatchRun> = [];
  for (const name of hooks) {
    const src = cache.get(name)!;
    let at = 0; // first sample of the current chunk
    const fromX = (act: Float32Array, info: { shape: number[] }) => {
      const per = act.length / info.shape[0]!;
      act.set(src.subarray(at * per, at * per + act.length));
    };
    const out = await withHooks(model, { [name]: fromX }, () => forwardBatch(model, negX, { before: (b0) => { at = b0; } }));
    patched.push({ hook: name, ...run(out) });
  }

  return patchOutput(B, hooks, baselines, patched, {});
}

/** Findings and figure of the patch runs (both families). */
function patchOutput(B: number, hooks: string[], baselines: { x: PatchRun; negX: PatchRun }, patched: Array<{ hook: string } & PatchRun>, extra: Record<string, unknown>): AnalysisOutput {
  const f = (r: PatchRun) => `MSE to X ${fmt(r.toX.hidden)}, to −X ${fmt(r.toNegX.hidden)} (hidden cells; all cells ${fmt(r.toX.all)} / ${fmt(r.toNegX.all)})`;
  const closer = (r: PatchRun) => {
    const k = Number.isFinite(r.toX.hidden) ? "hidden" : "all";
    return `${k === "hidden" ? "hidden cells" : "outputs"} closer to ${r.toX[k] < r.toNegX[k] ? "X" : "−X"}`;
  };
  const findings = [
    `run on X: ${f(baselines.x)}`,
    `run on −X: ${f(baselines.negX)}`,
    ...patched.map((p) => `run on −X with ${p.hook} from X: ${f(p)}; ${closer(p)}`),
  ];

  const values: Array<{ run: string; target: string; cells: string; mse: number }> = [];
  const add = (runName: string, r: PatchRun) => {
    for (const cells of ["all", "hidden", "observed"] as const) {
      values.push({ run: runName, target: "X", cells, mse: r.toX[cells] }, { run: runName, target: "−X", cells, mse: r.toNegX[cells] });
    }
  };
  add("X (unpatched)", baselines.x);
  add("−X (unpatched)", baselines.negX);
  for (const p of patched) add(`−X, patched ${p.hook}`, p);
  const order = ["X (unpatched)", "−X (unpatched)", ...patched.map((p) => `−X, patched ${p.hook}`)];
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "activation patching: run on −X with one activation taken from the run on X", subtitle: "MSE of the outputs to X and to −X (same mask, one batch)" },
    data: { values: values.filter((v) => Number.isFinite(v.mse)) },
    facet: { row: { field: "cells", type: "nominal", title: "cells", sort: ["all", "hidden", "observed"] } },
    spec: {
      width: Math.max(240, 70 * order.length), height: 160,
      mark: "bar",
      encoding: {
        x: { field: "run", type: "nominal", sort: order, title: "run", axis: { labelAngle: -30, labelLimit: 320 } },
        xOffset: { field: "target", type: "nominal", sort: ["X", "−X"] },
        y: { field: "mse", type: "quantitative", title: "MSE" },
        color: { field: "target", type: "nominal", title: "MSE to", sort: ["X", "−X"] },
        tooltip: [{ field: "run" }, { field: "target" }, { field: "mse", format: ".4g" }],
      },
    },
    resolve: { scale: { y: "independent" } },
  } as VlSpec;
  return { json: { ...extra, batch: B, hooks, baselines, patched }, figures: [{ name: "mse", spec }], findings };
}

/** MSE of generated tokens [B, m·n], decoded, to sign·X; `nonvalue`: the share of cells without a value token. */
function generatedMse(gen: Int32Array, x: GptBatch, sign: number): Mse & { nonvalue: number } {
  const s = [0, 0], n = [0, 0];
  let bad = 0;
  for (let i = 0; i < gen.length; i++) {
    const v = gptValueOf(gen[i]!);
    if (Number.isNaN(v)) { bad++; continue; }
    const h = x.hidden[i]!;
    s[h]! += (v - sign * x.values[i]!) ** 2;
    n[h]!++;
  }
  const r = (a: number, c: number) => (c > 0 ? a / c : NaN);
  return { all: r(s[0]! + s[1]!, n[0]! + n[1]!), hidden: r(s[1]!, n[1]!), observed: r(s[0]!, n[0]!), nonvalue: bad / gen.length };
}

/** patch on a GPT context (see the header). */
export async function gptPatch(ctx: AnalysisContext, opts: PatchOptions): Promise<AnalysisOutput> {
  checkBatchSize(opts.batch);
  const model = gptOf(ctx);
  const hooks = opts.hooks ?? Array.from({ length: model.cfg.L }, (_, l) => `blocks.${l}.attn.out`);
  if (hooks.length === 0) throw new AbruptError("no hooks to patch");
  const valid = model.hookNames().filter((h) => !h.endsWith("attn.pattern"));
  for (const h of hooks) {
    if (!valid.includes(h)) throw new AbruptError(`unknown or not per-position hook "${h}" (valid: ${valid.join(", ")})`);
  }
  const x = sampleGpt(ctx, opts.batch);
  const negX = gptBatchOf({ ...x.base, targets: x.base.targets.map((v) => -v) }, ctx.data.clamp);
  const { B, T, cells } = x;
  const generate = () => model.generate(gptPrompts(negX), B, cells + 1, cells);
  const run = (gen: Int32Array): PatchRun & { nonvalue: number } => {
    const toX = generatedMse(gen, x, 1), toNegX = generatedMse(gen, x, -1);
    return { toX: { all: toX.all, hidden: toX.hidden, observed: toX.observed }, toNegX: { all: toNegX.all, hidden: toNegX.hidden, observed: toNegX.observed }, nonvalue: toX.nonvalue };
  };

  const { cache } = await runWithCache(model, gptTokens(x), hooks);
  const baselines = { x: run(await model.generate(gptPrompts(x), B, cells + 1, cells)), negX: run(await generate()) };
  const patched: Array<{ hook: string } & PatchRun> = [];
  for (const name of hooks) {
    const src = cache.get(name)!; // [B, T, D] from the run on X
    const fromX = (act: Float32Array, info: { shape: number[] }) => {
      const nb = info.shape[0]!, D = act.length / (nb * T); // generate runs all B sequences in one pass
      for (let b = 0; b < nb; b++) act.set(src.subarray(b * T * D, (b * T + cells + 1) * D), b * T * D);
    };
    patched.push({ hook: name, ...run(await withHooks(model, { [name]: fromX }, generate)) });
  }
  return patchOutput(B, hooks, baselines, patched, {
    family: "gpt",
    measure: "greedy generation of X's cells; patched activations replaced at the prompt positions (masked X and SEP) by those of the run on X; MSE of the decoded values",
  });
}

export const experiment: Experiment<typeof PatchOptionsSchema> = {
  name: "patch",
  summary: "activation patching: run on -X with attention outputs from X",
  options: PatchOptionsSchema,
  steps: "post",
  families: ["bert", "gpt"],
  run: (ctx, o) => (ctx.family === "gpt" ? gptPatch(ctx, o) : patch(ctx, o)),
};
