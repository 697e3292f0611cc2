// Experiment 8, ablate: how much each attention head matters (SPEC §4,
// "replace chosen heads' attention by the batch-mean pattern"). Each chosen
// head is ablated alone, on one batch with random masks, in one or both ways:
//   zero: its output columns h·hs..(h+1)·hs of `blocks.{l}.attn.z` are set
//         to 0 (the output projection then sees nothing from it);
//   mean: its pattern in `blocks.{l}.attn.pattern` is replaced by the mean
//         over the batch of its [T,T] pattern in the clean run (a first pass
//         computes the means), so the head no longer depends on the input.
// Δ = ablated − clean, for L (all cells), L_mask (hidden), L_obs (observed).
// Layers and heads are 0-based, as in the hook names.
//
// On a GPT run the same two ablations act on the GPT's hooks (T = 2·m·n
// positions, causal patterns), and L, L_mask, L_obs are the teacher-forced
// cross-entropies at the answer positions (all, hidden, observed cells;
// gpt-common.ts), with the argmax accuracy at hidden cells beside them
// (acc_mask); JSON adds family: "gpt" and measure.
//
// JSON schema:
// {
//   batch, modes: ["zero" | "mean"],
//   clean: { loss, loss_mask, loss_obs },
//   heads: [{ layer, head,
//             zero?: { loss, loss_mask, loss_obs, dLoss, dLossMask, dLossObs },
//             mean?: { ...same } }]
// }

import { z } from "zod";
import { sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import type { HookFn } from "../model/hooks.js";
import { type AnalysisContext, type AnalysisOutput, gptOf, lossSplit } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { type Hooked, type Tokens, forwardBatch, withHooks } from "./forward.js";
import { answerScores, gptTokens, sampleGpt } from "./gpt-common.js";
import { checkBatchSize, fmt } from "./attention.js";

export type AblationMode = "zero" | "mean";

export const AblateOptionsSchema = z.object({
  /** heads as "layer.head" (0-based), e.g. ["2.1", "3.0"]; null (default): every head, one at a time */
  heads: z.array(z.string()).nullable().default(null),
  /** "both" (default), "zero" or "mean" */
  mode: z.enum(["both", "zero", "mean"]).default("both"),
  /** matrices in the batch */
  batch: count(256),
});
export type AblateOptions = z.output<typeof AblateOptionsSchema>;
export const ABLATE_DEFAULTS: AblateOptions = AblateOptionsSchema.parse({});

export interface Losses {
  loss: number;
  loss_mask: number;
  loss_obs: number;
}

export interface AblatedLosses extends Losses {
  dLoss: number;
  dLossMask: number;
  dLossObs: number;
}

/** "L.H" strings → [layer, head] pairs, checked against the model. */
export function parseHeads(model: { cfg: { L: number; H: number } }, heads: string[]): Array<[number, number]> {
  const { L, H } = model.cfg;
  return heads.map((s) => {
    const m = /^\s*(\d+)\.(\d+)\s*$/.exec(s);
    if (!m) throw new AbruptError(`head "${s}" is not of the form LAYER.HEAD (e.g. 2.1)`);
    const l = Number(m[1]), h = Number(m[2]);
    if (l >= L) throw new AbruptError(`head ${s}: layer ${l} is outside 0..${L - 1}`);
    if (h >= H) throw new AbruptError(`head ${s}: head ${h} is outside 0..${H - 1}`);
    return [l, h];
  });
}

export async function ablate(ctx: AnalysisContext, opts: AblateOptions): Promise<AnalysisOutput> {
  checkBatchSize(opts.batch);
  if (!["zero", "mean", "both"].includes(opts.mode)) throw new AbruptError(`mode must be "zero", "mean" or "both" (got "${opts.mode}")`);
  const modes: AblationMode[] = opts.mode === "both" ? ["zero", "mean"] : [opts.mode];
  const { model, batch, score } = subject(ctx, opts.batch);
  const { L, H, d } = model.cfg;
  const hs = d / H;
  const heads: Array<[number, number]> = opts.heads === null
    ? Array.from({ length: L * H }, (_, i) => [Math.floor(i / H), i % H])
    : parseHeads(model, opts.heads);
  if (heads.length === 0) throw new AbruptError("no heads to ablate");

  const { B, T } = batch;

  // clean pass; the batch-mean pattern of every layer and head is collected
  // here only if a mean ablation needs it
  const meanPat = modes.includes("mean") ? new Float64Array(L * H * T * T) : null;
  const cleanOut = await forwardBatch(model, batch, {
    after: async (_b0, nb) => {
      if (!meanPat) return;
      for (let l = 0; l < L; l++) {
        const att = await model.actHost(`blocks.${l}.attn.pattern`); // [nb, H, T, T]
        for (let b = 0; b < nb; b++) {
          for (let i = 0; i < H * T * T; i++) meanPat[l * H * T * T + i]! += att[b * H * T * T + i]!;
        }
      }
    },
  });
  const clean = score(cleanOut);
  const mean32 = meanPat ? Float32Array.from(meanPat, (x) => x / B) : null;

  const rows: Array<{ layer: number; head: number } & Partial<Record<AblationMode, AblatedLosses>>> = [];
  for (const [l, h] of heads) {
    const row: (typeof rows)[number] = { layer: l, head: h };
    for (const mode of modes) {
      const zero: HookFn = (z, info) => {
        const N = info.shape[0]! * info.shape[1]!; // [nb, T, C]
        for (let t = 0; t < N; t++) z.fill(0, t * d + h * hs, t * d + (h + 1) * hs);
      };
      const mean: HookFn = (att, info) => {
        const nb = info.shape[0]!; // [nb, H, T, T]
        const src = mean32!.subarray((l * H + h) * T * T, (l * H + h + 1) * T * T);
        for (let b = 0; b < nb; b++) att.set(src, (b * H + h) * T * T);
      };
      const hooks = mode === "zero" ? { [`blocks.${l}.attn.z`]: zero } : { [`blocks.${l}.attn.pattern`]: mean };
      const ls = score(await withHooks(model, hooks, () => forwardBatch(model, batch)));
      row[mode] = { ...ls, dLoss: ls.loss - clean.loss, dLossMask: ls.loss_mask - clean.loss_mask, dLossObs: ls.loss_obs - clean.loss_obs };
    }
    rows.push(row);
  }

  const gpt = ctx.family === "gpt";
  const findings: string[] = [`clean: L ${fmt(clean.loss)}, L_mask ${fmt(clean.loss_mask)}, L_obs ${fmt(clean.loss_obs)} on ${B} matrices${gpt ? " (GPT: teacher-forced cross-entropy at the answer positions)" : ""}`];
  const label: Record<AblationMode, string> = { zero: "zeroing the output", mean: "mean-pattern ablation" };
  for (const mode of modes) {
    const ranked = [...rows].sort((a, b) => b[mode]!.dLossMask - a[mode]!.dLossMask);
    const top = ranked.slice(0, 3).map((r) => `layer ${r.layer} head ${r.head} (ΔL_mask ${r[mode]!.dLossMask >= 0 ? "+" : ""}${fmt(r[mode]!.dLossMask)}, ΔL_obs ${fmt(r[mode]!.dLossObs)})`);
    findings.push(`${label[mode]}: largest L_mask increase at ${top.join("; ")}`);
    const tol = 0.01 * clean.loss_mask;
    const small = rows.filter((r) => Math.abs(r[mode]!.dLossMask) <= tol).length;
    findings.push(`${label[mode]}: ${small} of ${rows.length} heads change L_mask by at most 1% of the clean value`);
  }

  const values = rows.flatMap((r) => modes.map((mode) => ({ mode, layer: r.layer, head: r.head, dLossMask: r[mode]!.dLossMask })));
  const enc = { x: { field: "head", type: "ordinal", title: "head" }, y: { field: "layer", type: "ordinal", title: "layer" } };
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "head ablation: change of L_mask (hidden cells), one head at a time", subtitle: `clean L_mask ${fmt(clean.loss_mask)}; zero = head output set to 0, mean = pattern replaced by its batch mean` },
    data: { values },
    facet: { column: { field: "mode", type: "nominal", title: null, sort: ["zero", "mean"] } },
    spec: {
      width: { step: 28 }, height: { step: 28 },
      layer: [
        { mark: "rect", encoding: { ...enc, color: { field: "dLossMask", type: "quantitative", scale: { scheme: "redblue", reverse: true, domainMid: 0 }, title: "ΔL_mask" }, tooltip: [{ field: "layer" }, { field: "head" }, { field: "dLossMask", format: ".4g" }] } },
        { mark: { type: "text", fontSize: 7 }, encoding: { ...enc, text: { field: "dLossMask", format: ".2g" } } },
      ],
    },
  } as VlSpec;
  const measure = gpt ? { family: "gpt", measure: "teacher-forced cross-entropy at the answer positions (loss: all cells, loss_mask: hidden, loss_obs: observed); acc_mask: argmax accuracy at hidden cells" } : {};
  return { json: { ...measure, batch: B, modes, clean, heads: rows }, figures: [{ name: "heads", spec }], findings };
}

/**
 * The model of the context, its batch and how outputs are scored: the BERT's
 * MSE split, or the GPT's teacher-forced cross-entropies at the answer
 * positions (with acc_mask).
 */
function subject(ctx: AnalysisContext, B: number): {
  model: Hooked & { cfg: { L: number; H: number; d: number }; actHost(name: string): Promise<Float32Array> };
  batch: Tokens;
  score(out: Float32Array): Losses;
} {
  if (ctx.family === "gpt") {
    const g = sampleGpt(ctx, B);
    return {
      model: gptOf(ctx), batch: gptTokens(g),
      score: (out) => {
        const a = answerScores(out, g);
        return { loss: a.loss, loss_mask: a.loss_mask, loss_obs: a.loss_obs, acc_mask: a.acc_mask } as Losses;
      },
    };
  }
  const batch = sampleBatch(new Rng(ctx.seed), ctx.data, B);
  return { model: ctx.model(), batch, score: (out) => lossSplit(out, batch.targets, batch.hidden) };
}

export const experiment: Experiment<typeof AblateOptionsSchema> = {
  name: "ablate",
  summary: "per-head importance: zero or mean-pattern ablation",
  options: AblateOptionsSchema,
  steps: "post",
  families: ["bert", "gpt"],
  run: (ctx, o) => ablate(ctx, o),
};
