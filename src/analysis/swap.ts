// Experiment 9, swap: switching components between two checkpoints (SPEC §4,
// "switching components between a pre-drop and a post-drop checkpoint
// (attention Q/K/V, or all non-attention weights) shows which part carries
// the algorithm").
//
// For each part, two hybrids are built as new models (the loaded checkpoints
// are never changed): A with B's part, and B with A's part. All four kinds of
// model are evaluated on the same batch (random masks).
//
// Parts: "qkv" (query/key/value weights and biases of every layer), "attn"
// (qkv and the output projection), "non-attn" (everything but attention:
// embeddings, LayerNorms, MLPs, read-out), "all", or any parameter group
// selector of params.ts ("mlp", "ln", "embeddings", "tok_emb", "pos_emb",
// "readout", "blocks.2", "blocks.2.attn", ...). Atoms join with "+", e.g.
// "attn+mlp".
//
// JSON schema:
// {
//   batch, stepA, stepB,
//   A: Losses, B: Losses,                     // Losses = { loss, loss_mask, loss_obs }
//   parts: [{ part, tensors: string[], params,   // what is copied, and how many numbers
//             AwithB: Losses, BwithA: Losses }],
// }

import { z } from "zod";
import { sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { Bert } from "../model/bert.js";
import { type ModelConfig, type TensorSpec, groupMatches, groupNames, isValidGroupSelector, paramSpecs } from "../model/params.js";
import type { VlSpec } from "../viz/plot.js";
import { type AnalysisContext, type AnalysisOutput, type AnyBert, lossSplit } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { forwardBatch } from "./forward.js";
import { pickSteps } from "./phases.js";
import { checkBatchSize, fmt } from "./attention.js";

export const SwapOptionsSchema = z.object({
  /** checkpoint step of model A (with a run, `abrupt analyze` takes the "pre" checkpoint); null: none given → error */
  stepA: z.number().nullable().default(null),
  /** checkpoint step of model B (with a run: the "post" checkpoint) */
  stepB: z.number().nullable().default(null),
  /** parts to swap */
  parts: z.array(z.string()).default(["qkv", "attn", "non-attn"]),
  /** matrices in the batch */
  batch: count(256),
});
export type SwapOptions = z.output<typeof SwapOptionsSchema>;
export const SWAP_DEFAULTS: SwapOptions = SwapOptionsSchema.parse({});

/** The parameter tensors a part names. */
export function partTensors(cfg: ModelConfig, part: string): TensorSpec[] {
  const specs = paramSpecs(cfg);
  const atoms = part.split("+").map((a) => a.trim());
  const chosen = new Set<string>();
  for (const atom of atoms) {
    let pick: (s: TensorSpec) => boolean;
    if (atom === "all") pick = () => true;
    else if (atom === "qkv") pick = (s) => /^blocks\.\d+\.attn\.qkv\./.test(s.name);
    else if (atom === "non-attn") pick = (s) => !groupMatches(s.group, "attn");
    else if (isValidGroupSelector(cfg, atom)) pick = (s) => groupMatches(s.group, atom);
    else {
      throw new AbruptError(`unknown part "${atom}" (parts: qkv, attn, non-attn, all, mlp, ln, embeddings, ${groupNames(cfg).join(", ")}; join with +)`);
    }
    for (const s of specs) if (pick(s)) chosen.add(s.name);
  }
  return specs.filter((s) => chosen.has(s.name));
}

/** A new model with `base`'s parameters except `tensors`, taken from `donor`. */
export async function hybrid<Buf>(base: Bert<Buf>, donor: Bert<Buf>, tensors: TensorSpec[]): Promise<Bert<Buf>> {
  const h = base.clone();
  const from = await donor.paramsHost();
  for (const s of tensors) h.setParam(s.name, from.subarray(s.offset, s.offset + s.size));
  return h;
}

function sameConfig(a: ModelConfig, b: ModelConfig): boolean {
  return a.vocab === b.vocab && a.positions === b.positions && a.L === b.L && a.H === b.H && a.d === b.d && a.ff === b.ff && a.lnEps === b.lnEps;
}

export async function swap(ctx: AnalysisContext, opts: SwapOptions): Promise<AnalysisOutput> {
  checkBatchSize(opts.batch);
  if (opts.stepA === null || opts.stepB === null) throw new AbruptError("swap needs two checkpoints: give stepA and stepB");
  if (opts.parts.length === 0) throw new AbruptError("no parts to swap");
  const a = ctx.model(opts.stepA);
  const b = ctx.model(opts.stepB);
  if (!sameConfig(a.cfg, b.cfg)) {
    throw new AbruptError(`checkpoints ${opts.stepA} and ${opts.stepB} have different model shapes (${JSON.stringify(a.cfg)} vs ${JSON.stringify(b.cfg)})`);
  }
  const parts = opts.parts.map((part) => ({ part, tensors: partTensors(a.cfg, part) }));
  const batch = sampleBatch(new Rng(ctx.seed), ctx.data, opts.batch);
  const evaluate = async (model: AnyBert) => lossSplit(await forwardBatch(model, batch), batch.targets, batch.hidden);

  const lossA = await evaluate(a);
  const lossB = await evaluate(b);
  const rows = [];
  for (const { part, tensors } of parts) {
    rows.push({
      part,
      tensors: tensors.map((s) => s.name),
      params: tensors.reduce((acc, s) => acc + s.size, 0),
      AwithB: await evaluate(await hybrid(a, b, tensors)),
      BwithA: await evaluate(await hybrid(b, a, tensors)),
    });
  }

  const A = `A (step ${opts.stepA})`, Bn = `B (step ${opts.stepB})`;
  const findings = [
    `${A}: L ${fmt(lossA.loss)}, L_mask ${fmt(lossA.loss_mask)}, L_obs ${fmt(lossA.loss_obs)}`,
    `${Bn}: L ${fmt(lossB.loss)}, L_mask ${fmt(lossB.loss_mask)}, L_obs ${fmt(lossB.loss_obs)}`,
    ...rows.map((r) => `${r.part}: A with B's ${r.part} L_mask ${fmt(r.AwithB.loss_mask)} (L_obs ${fmt(r.AwithB.loss_obs)}); B with A's ${r.part} L_mask ${fmt(r.BwithA.loss_mask)} (L_obs ${fmt(r.BwithA.loss_obs)})`),
  ];

  const values: Array<{ part: string; variant: string; loss_mask: number }> = [
    { part: "none", variant: "A base", loss_mask: lossA.loss_mask },
    { part: "none", variant: "B base", loss_mask: lossB.loss_mask },
    ...rows.flatMap((r) => [
      { part: r.part, variant: "A base", loss_mask: r.AwithB.loss_mask },
      { part: r.part, variant: "B base", loss_mask: r.BwithA.loss_mask },
    ]),
  ].filter((v) => Number.isFinite(v.loss_mask) && v.loss_mask > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values.map((v) => v.loss_mask), 1)));
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: `switching components: L_mask of A (step ${opts.stepA}), B (step ${opts.stepB}) and hybrids`, subtitle: "each group: A with that part from B, and B with that part from A (\"none\": the checkpoints themselves)" },
    data: { values },
    width: Math.max(240, 90 * (rows.length + 1)), height: 260,
    mark: "bar",
    encoding: {
      x: { field: "part", type: "nominal", sort: ["none", ...rows.map((r) => r.part)], title: "part swapped in", axis: { labelAngle: 0 } },
      xOffset: { field: "variant", type: "nominal", sort: ["A base", "B base"] },
      y: { field: "loss_mask", type: "quantitative", scale: { type: "log", domainMin: lo }, title: "L_mask (hidden cells)" },
      y2: { datum: lo },
      color: { field: "variant", type: "nominal", title: "model", sort: ["A base", "B base"], scale: { range: ["#e45756", "#4c78a8"] }, legend: { labelExpr: "datum.label == 'A base' ? 'A, part from B' : 'B, part from A'" } },
      tooltip: [{ field: "part" }, { field: "variant" }, { field: "loss_mask", format: ".4g" }],
    },
  } as VlSpec;
  return {
    json: { batch: batch.B, stepA: opts.stepA, stepB: opts.stepB, A: lossA, B: lossB, parts: rows },
    figures: [{ name: "loss", spec }],
    findings,
  };
}

export const experiment: Experiment<typeof SwapOptionsSchema> = {
  name: "swap",
  summary: "swap Q/K/V, attention or non-attention weights between pre and post checkpoints",
  whyNot: { gpt: "it switches the BERT's parameter groups (attention Q/K/V, non-attention weights) between checkpoints by their BERT names" },
  options: SwapOptionsSchema,
  steps: "none",
  dashboard: false, // needs a pre- and a post-drop checkpoint together
  run: (ctx, o, run) => swap(ctx, run ? { ...o, stepA: o.stepA ?? pickSteps(run, "pre")[0]!, stepB: o.stepB ?? pickSteps(run, "post")[0]! } : o),
};
